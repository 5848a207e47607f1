# Two commands do everything on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= full
STAMP := $(VENV)/.installed

.PHONY: setup book smoke test lint clean

# Create the virtualenv and install the pinned requirements and the package (editable).
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The whole book, full profile, into _build/html (chapters whose inputs did not change are reused).
book: setup
	$(PY) -m dlbook build --profile $(PROFILE)

# The quick profile: every chapter on small subsets, then rendered.
smoke: setup
	$(PY) -m dlbook build --profile smoke

# Unit tests, then every chapter notebook executed on its default (smoke) parameters.
test: setup
	$(PY) -m pytest -q
	$(PY) -m pytest -q --nbval-lax chapters/ -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf _build results .cache
