# Everything a fresh machine needs: `make quickstart` (train + kNN figure) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sslkit-installed

.PHONY: quickstart test lint docs bench clean

$(STAMP): pyproject.toml docs/examples/sslkit-gram/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-build-isolation -e docs/examples/sslkit-gram
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/sslkit train recipes/quickstart.yaml --output-dir runs/quickstart

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q
	$(PY) -m pytest -q docs/examples/sslkit-gram/tests
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build runs site
