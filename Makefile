# The two commands of the README. Each sets up what it needs first (idempotent).
.PHONY: setup run test lint
setup:
	@bash scripts/setup.sh
run: setup
	.venv/bin/cl-ssvdo demo
test: setup
	.venv/bin/python -m pytest -q --durations=15
lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
