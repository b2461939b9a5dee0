# Two commands on a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install test lint bench demo docs clean

# The development tools are a dependency group (PEP 735), which pip reads from 25.1 on.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e . --group dev
	touch $@

install: $(BIN)/.installed

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: install
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: install
	$(BIN)/ruff check tap_deepconverse tests scripts
	$(BIN)/ruff format --check tap_deepconverse tests scripts
	$(BIN)/mypy tap_deepconverse scripts

clean:
	rm -rf $(VENV) .meltano output .pytest_cache .mypy_cache .ruff_cache

docs: install
	$(BIN)/python scripts/settings_table.py

# Simulator -> meltano run tap-deepconverse--duckdb target-duckdb -> what landed, reported
# from the DuckDB file and Meltano's state; a second run is incremental (state in .meltano/).
demo: install
	$(BIN)/python scripts/demo.py

# The tap of a baseline ref against the working tree's, in one run, on the simulator: requests
# against the floor, wall time against the rate limit, memory, incremental cost (about 25 min;
# BENCH_ARGS=--quick ~1.5 min, BENCH_ARGS='--baseline none' the working tree only). The code:
# scripts/bench/, one module per group of figures.
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m scripts.bench $(BENCH_ARGS)
