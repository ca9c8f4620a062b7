# Two entry points (see README): `make reproduce` and `make test`.
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: reproduce test venv venv-test bench

$(VENV)/.core: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

$(VENV)/.test: $(VENV)/.core requirements-test.txt
	$(PY) -m pip install -r requirements-test.txt
	touch $@

venv: $(VENV)/.core
venv-test: $(VENV)/.test

## Execute every notebook top to bottom on the embedded default and save it with outputs.
reproduce: $(VENV)/.core
	$(PY) scripts/run_notebooks.py
	$(PY) scripts/render_results.py

## Run the test suite (includes executing every notebook in the quick setting).
test: $(VENV)/.test
	$(PY) -m pytest -q
