# The two set-up commands of the README: `make run` (main job) and `make test` (test suite).
# Each creates the virtual environment and installs the project from its own files first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= results

.PHONY: run test test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]" -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/prune-jax limit --out $(OUT)/limit

test: $(STAMP)
	$(VENV)/bin/ruff check prune_jax tests benchmarks
	$(PY) -m pytest -n 2 -q

# notebooks (smoke mode), the docs build, the docs' code pages and the multi-host check
test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -q -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]" -c constraints.txt

clean:
	rm -rf $(VENV) $(OUT)
