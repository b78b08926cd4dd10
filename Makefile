# Two commands set up and exercise everything on a fresh machine:
#   make demo   - create/refresh .venv, install, run the demo on the embedded default
#   make test   - create/refresh .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: demo test lint format proto bench clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tracker demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Regenerate tracker/v1/*_pb2*.py from proto/ (tests fail when the committed copy is stale).
proto: $(STAMP)
	$(PY) -m tracker.protogen

bench: $(STAMP)
	$(PY) bench/bench_flow.py --json bench/results/flow.json

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
