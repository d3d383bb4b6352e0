# Two entry points for a fresh machine; each builds its own virtual environment.
#   make demo  - tune the default ensemble on the built-in SLICE-3D simulator
#   make test  - run the test suite
PYTHON ?= python3
DEMO_VENV ?= .venv-demo
TEST_VENV ?= .venv-test
RUN_DIR ?= runs/demo

.PHONY: demo test clean

$(DEMO_VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -e ".[report]"
	touch $@

$(TEST_VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(DEMO_VENV)/.done
	$(DEMO_VENV)/bin/lesionboost tune --out $(RUN_DIR) --force

test: $(TEST_VENV)/.done
	$(TEST_VENV)/bin/python -m pytest -q

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) runs
