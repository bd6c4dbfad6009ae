.PHONY: run test format check bench release

run:
	scripts/run.sh

test:
	scripts/test.sh

format:
	.venv/bin/python -m ruff check --fix .
	.venv/bin/python -m black .

# dist/satmachineadmin-<version>.zip (what LNbits installs) and its entry in
# manifest.json (URL + sha256). The archive's URL is the GitHub release
# v<version>, or $(SATMACHINE_RELEASE_URL_BASE), e.g.
#   make release SATMACHINE_RELEASE_URL_BASE=https://example.org/satmachineadmin
release:
	python3 scripts/release.py

check:
	.venv/bin/python -m ruff check .
	.venv/bin/python -m black --check .
	.venv/bin/python -m mypy .

# The figures in bench/README.md (about 45 minutes on 2 cores). SQLite stops
# at N=1000: LNbits' own cost per payment there grows with its database.
bench:
	.venv/bin/python bench/bench_settlement.py --db sqlite --n 10,100,1000
	.venv/bin/python bench/bench_settlement.py --db postgres --n 10,100,1000,5000
