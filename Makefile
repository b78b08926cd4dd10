# Two commands set up and exercise everything on a fresh machine:
#   make demo   - create/refresh .venv, install, run the demo on the embedded default
#   make test   - create/refresh .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: demo test test-deps lint format proto bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Every install takes its versions from constraints.txt, the one pin list (the Dockerfile
	# uses it too; tests/test_packaging.py checks that pyproject.toml agrees with it).
	$(PY) -m pip install --quiet -c constraints.txt --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt setuptools wheel
	# torch first (a large CUDA build; it also runs on CPU), then sam2 built against it:
	# sam2's sdist declares torch as a build requirement, so an isolated build would
	# download a second torch. SAM2_BUILD_CUDA=0 skips its optional CUDA extension.
	$(PY) -m pip install --quiet -c constraints.txt torch torchvision
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet -c constraints.txt --no-build-isolation sam2
	# [all]: every extra (io, sam2, onnx, openvino, overseer, bench); [dev]: tests and linters.
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tracker demo --out $(DEMO_OUT)

test: $(STAMP) test-deps
	$(PY) -m pytest -q

# The live view's page is tested in headless Chromium (Debian's package). Installed when
# missing and this user can; otherwise that one test is skipped and says why.
test-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian's chromium for the live-view test"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium not installed: the live-view browser test will be skipped"; fi; }

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
