.PHONY: run test format check bench

run:
	scripts/run.sh

test:
	scripts/test.sh

format:
	.venv/bin/python -m ruff check --fix .
	.venv/bin/python -m black .

check:
	.venv/bin/python -m ruff check .
	.venv/bin/python -m black --check .
	.venv/bin/python -m mypy .

# The figures in bench/README.md (about 45 minutes on 2 cores). SQLite stops
# at N=1000: LNbits' own cost per payment there grows with its database.
bench:
	.venv/bin/python bench/bench_settlement.py --db sqlite --n 10,100,1000
	.venv/bin/python bench/bench_settlement.py --db postgres --n 10,100,1000,5000
