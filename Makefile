# Two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Never let the checkout's folders shadow the installed (mapped) package.
export PYTHONSAFEPATH := 1

PKG_DIRS := privaudit mechanisms estimators attacks crypto api
# The strict editable install links files one by one: re-link when the file set changes.
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
LINK_STAMP := $(VENV)/.link-$(shell find $(PKG_DIRS) -type f \( -name '*.py' -o -name '*.mako' -o -name py.typed \) | LC_ALL=C sort | sha1sum | cut -c1-12)

.PHONY: install run test test-slow lint bench clean

install: $(LINK_STAMP)

$(DEPS_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]" --config-settings editable_mode=strict
	rm -f $(VENV)/.deps-* && touch $@

$(LINK_STAMP): $(DEPS_STAMP)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict
	rm -f $(VENV)/.link-* && touch $@

run: install
	$(BIN)/privaudit serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# mypy reads the mapped package through the editable link tree, not the checkout.
	MYPYPATH="$$(ls -d build/__editable__.privaudit-*)" $(BIN)/mypy -p privaudit

test: lint
	$(BIN)/pytest

test-slow: install
	$(BIN)/pytest -m "slow"

bench: install
	$(BIN)/python benchmarks/api_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
