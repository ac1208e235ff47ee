# Two entry points, each doing its own set-up in a virtual environment inside the checkout:
#   make book   run every notebook at the quick profile and build the site into _build/html
#   make test   run the whole test suite
#   make benchmark  (optional) the solver benchmark; the law chapter quotes its last run
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test install clean benchmark

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m recon book --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest

benchmark: $(STAMP)
	$(PY) benchmarks/solver_benchmark.py --readme README.md

clean:
	rm -rf _build book/chapters figures .pytest_cache
