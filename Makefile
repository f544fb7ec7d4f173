# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   — create .venv if needed, install the project, run `python cli.py demo`
#   make test   — create .venv if needed, install the project with its dev extra, run the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) cli.py demo $(ARGS)

# two pytest workers (pytest-xdist), one per core of the 2-core target machine; a module's tests stay
# on one worker, so its module-scoped fixtures are built once. JOBS=0 runs them in this process.
JOBS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q $(if $(filter 0,$(JOBS)),-p no:xdist,-n $(JOBS) --dist loadscope) $(ARGS)

clean:
	rm -rf $(VENV) demo-work .pytest_cache
