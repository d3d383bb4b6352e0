# Two entry points for a fresh machine; each builds its own virtual environment.
#   make demo  - tune the default ensemble on the built-in SLICE-3D simulator
#   make test  - lint, type-check, check the import layers, run the test suite and doctests
PYTHON ?= python3
DEMO_VENV ?= .venv-demo
TEST_VENV ?= .venv-test
RUN_DIR ?= runs/demo
# PyTorch for the `torch`-marked tests (ONNX export parity of the image trainer).
# Pinned to a CPU build: a plain `torch` requirement resolves to the CUDA build on
# Linux, several GB of nvidia-* wheels. The `+cpu` build comes from a local wheel
# folder on PIP_FIND_LINKS or from PyTorch's own index (TORCH_INDEX=...); where
# neither has it, the torch tests skip and everything else runs.
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_INDEX ?=

.PHONY: demo test results gpu-check clean

$(DEMO_VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -e ".[report]"
	touch $@

$(TEST_VENV)/.done: pyproject.toml Makefile
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/python -m pip install --quiet -e ".[test]"
	$(TEST_VENV)/bin/python -m pip install --quiet \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) "$(TORCH_CPU)" "onnxscript>=0.2" \
		|| echo "note: $(TORCH_CPU) is not available here; the torch-marked tests will skip"
	touch $@

demo: $(DEMO_VENV)/.done
	$(DEMO_VENV)/bin/lesionboost tune --out $(RUN_DIR) --force

# The habits CI enforces, then the suite with the docstring examples, spread over
# PYTEST_WORKERS processes (pytest-xdist; 2 suits CI's two cores, 0 runs in one process).
LINT_PATHS = lesionboost tests benchmarks examples conftest.py
PYTEST_WORKERS ?= 2
test: $(TEST_VENV)/.done
	$(TEST_VENV)/bin/ruff check $(LINT_PATHS)
	$(TEST_VENV)/bin/ruff format --check $(LINT_PATHS)
	$(TEST_VENV)/bin/mypy
	$(TEST_VENV)/bin/lint-imports
	$(TEST_VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS)

# On a machine with an NVIDIA GPU and the CUDA builds (`pip install xgboost
# onnxruntime-gpu` in place of xgboost-cpu / onnxruntime; CatBoost's wheel has
# CUDA): the gpu-marked tests and the image benchmark on CUDA (every provider and
# precision, decode scaling), written together to runs/gpu-check.json; then CPU
# against CUDA for the boosters at full simulator size (GPU_CHECK_DEVICES=0 skips it).
# GPU_PYTHON=python3 uses an interpreter that is already set up (an offline machine,
# docs/gpu.md) instead of building $(TEST_VENV).
GPU_PYTHON ?=
GPU_CHECK_DEVICES ?= 1
GPU_PY = $(or $(GPU_PYTHON),$(TEST_VENV)/bin/python)
gpu-check: $(if $(GPU_PYTHON),,$(TEST_VENV)/.done)
	@mkdir -p runs && rm -f runs/gpu-tests.xml runs/gpu-tests.failed
	$(GPU_PY) -m pytest -m gpu -rs -p no:cacheprovider tests/test_gpu.py \
		--junitxml=runs/gpu-tests.xml || touch runs/gpu-tests.failed
	$(GPU_PY) benchmarks/images.py --skip-quality --junit runs/gpu-tests.xml \
		--out runs/gpu-check.json
	@if [ -e runs/gpu-tests.failed ]; then \
		echo "GPU tests failed: see runs/gpu-check.json"; exit 1; fi
	@if [ "$(GPU_CHECK_DEVICES)" = "1" ]; then \
		$(GPU_PY) benchmarks/devices.py --out runs/devices.json; fi

# Fill the README and docs tables from benchmarks/results/*.json.
results: $(TEST_VENV)/.done
	$(TEST_VENV)/bin/python benchmarks/render.py

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) runs
