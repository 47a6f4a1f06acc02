# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first, pinned to its CPU build (`+cpu`), so that a CPU machine never pulls a multi-GB
# CUDA build: pip takes it from a local wheel when one is found, else from PyTorch's CPU index.
# GPU users: `make TORCH_LOCAL= test` installs the CUDA build of the same version from PyPI.
TORCH_VERSION ?= 2.13.0
TORCH_LOCAL ?= +cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo test lint train bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)$(TORCH_LOCAL)" 2>/dev/null \
	  || $(PY) -m pip install -q "torch==$(TORCH_VERSION)$(TORCH_LOCAL)" --extra-index-url $(TORCH_INDEX)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	$(PY) evaluate.py --input builtin --out demo

test: venv
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check .

train: venv
	$(PY) train_sb3.py

bench: venv
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/inference_speed.py

clean:
	rm -rf $(VENV) demo runs
