# Two commands do all set-up on a fresh machine:
#   make demo   set up .venv, then run the main job end to end
#   make test   set up .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo test bench clean

setup:
	PYTHON=$(PYTHON) VENV=$(VENV) ./scripts/setup_env.sh

demo: setup
	$(VENV)/bin/python -m metricgold_demo.run $(DEMO_ARGS)

test: setup
	$(VENV)/bin/python scripts/run_tests.py $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/metricgold bench

clean:
	rm -rf $(VENV) build *.egg-info demo_output
