# Everything a fresh machine needs: `make quickstart` (train + kNN figure) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sslkit-installed

.PHONY: quickstart test lint docs bench gpu-check gpu-wheels clean

$(STAMP): pyproject.toml docs/examples/sslkit-gram/pyproject.toml docs/examples/sslkit-byol/pyproject.toml \
		docs/examples/sslkit-latent-mim/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev,hf]"
	$(PY) -m pip install -q --no-build-isolation -e docs/examples/sslkit-gram
	$(PY) -m pip install -q --no-build-isolation -e docs/examples/sslkit-byol
	$(PY) -m pip install -q --no-build-isolation -e docs/examples/sslkit-latent-mim
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/sslkit train recipes/quickstart.yaml --output-dir runs/quickstart

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2
	$(PY) -m pytest -q docs/examples/sslkit-gram/tests
	$(PY) -m pytest -q docs/examples/sslkit-byol/tests
	$(PY) -m pytest -q docs/examples/sslkit-latent-mim/tests
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py

# GPU check (benchmarks/gpu_check.py): the GPU form on a CUDA machine, a tiny CPU form elsewhere (as in CI).
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --out build/gpu-check

# Wheels the lent GPU machine lacks (Python 3.12, no registry there), carried in .whl/ by benchmarks/gpu_check.sh.
GPU_WHEELS := kornia==0.9.0 kornia_rs==0.2.0
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $(GPU_WHEELS)

clean:
	rm -rf $(VENV) build runs site
