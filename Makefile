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

bench:
	.venv/bin/python bench/bench_settlement.py
