# Two commands on a fresh machine: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install test lint bench demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check tap_deepconverse tests
	$(BIN)/mypy tap_deepconverse

clean:
	rm -rf $(VENV) .meltano output .pytest_cache .mypy_cache .ruff_cache
