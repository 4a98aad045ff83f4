# hidream-models: one command to try it (`make demo`), one to test it (`make test`).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The first interpreter >= 3.12 found: $(PYTHON) if given, then python3.13/3.12 on PATH,
# then pyenv's versions, then plain python3.
FIND_PYTHON = for c in "$(PYTHON)" python3.13 python3.12 \
	  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -rV) python3; do \
	  [ -n "$$c" ] || continue; \
	  command -v "$$c" >/dev/null 2>&1 || continue; \
	  "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$c"; break; }; \
	done

.PHONY: help venv test lint demo clean test-celery docs dist

help:
	@echo "make demo   run the demo shop on http://127.0.0.1:8000 (admin / admin)"
	@echo "make test   run the test suite (SQLite; DATABASE_URL to use another database)"
	@echo "make lint   ruff"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@py="$$($(FIND_PYTHON))"; \
	if [ -z "$$py" ]; then \
	  echo "ERROR: hidream-models needs Python 3.12 or newer (Django 6 requires it), and none was found." >&2; \
	  echo "       Install one (e.g. 'pyenv install 3.13') or run: make PYTHON=/path/to/python3.12 ..." >&2; \
	  exit 1; \
	fi; \
	if [ -x "$(PY)" ] && ! "$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  echo "Replacing $(VENV): it was made with a Python older than 3.12"; rm -rf "$(VENV)"; \
	fi; \
	[ -x "$(PY)" ] || { echo "Creating $(VENV) with $$py ($$("$$py" --version))"; "$$py" -m venv "$(VENV)"; }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# The browser test's accessibility check injects axe-core from npm (package.json pins it):
# `npm ci` whenever node_modules is missing or older than the lock file. Without npm the
# browser tests still run and the axe test fails saying what to install.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "npm ci (axe-core for the browser test's accessibility check)"; \
	  npm ci --silent --no-audit --no-fund && touch $(NODE_STAMP); \
	else \
	  echo "WARNING: npm not found; the accessibility test needs it (apt-get install -y npm)." >&2; \
	fi

test: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

demo: $(STAMP)
	$(PY) manage.py run_demo

# `make dist`: the sdist and the wheel into dist/, checked by twine as PyPI would. Built without
# isolation (setuptools is pinned in requirements-dev.txt): nothing is downloaded.
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	$(PY) -m twine check --strict dist/*

# `make docs`: the documentation site into site/ (mkdocs.yml; strict, a warning fails), with
# the settings and REST API references generated from the code (mkdocs_hooks.py).
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

# `make bench`: the benchmarks (benchmarks/, docs/performance.md); BENCH_ARGS="--only 1,6".
.PHONY: bench
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

# Two Celery workers on Redis and PostgreSQL run 200 tasks through the simulator, exactly once.
CELERY_DB ?= hidream_celery_$(shell echo $$PPID)
test-celery: $(STAMP)
	@pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not running on 127.0.0.1:5432" >&2; exit 1; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not running on 127.0.0.1:6379" >&2; exit 1; }
	DJANGO_SETTINGS_MODULE=tests.settings_celery \
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/$(CELERY_DB) \
	$(PY) -m pytest tests/scale -m celery -p no:cacheprovider -s $(PYTEST_ARGS)

# `make test-chaos`: the chaos run (tests/chaos, docs/reliability.md): TASKS tasks x 2 pictures on
# two Celery workers, Redis and PostgreSQL (a database of its own) against the simulator's seeded
# faults, workers SIGKILLed every 15-30 s; then every task is checked against the simulator's
# ledger of billed tasks. Logs and results in var/chaos/. CHAOS_ARGS="--keep-db" and the like.
TASKS ?= 200
CHAOS_SEED ?= 14
.PHONY: test-chaos
test-chaos: $(STAMP)
	@pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL is not running on 127.0.0.1:5432" >&2; exit 1; }
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not running on 127.0.0.1:6379" >&2; exit 1; }
	$(PY) -m tests.chaos --tasks $(TASKS) --seed $(CHAOS_SEED) $(CHAOS_ARGS)

# `make screenshots`: the real-browser walk (tests/browser) photographs every step into
# docs/screenshots/NN-name.png. Needs Debian's Chromium (apt-get install -y chromium).
.PHONY: screenshots
screenshots: $(STAMP)
	@[ -x /usr/bin/chromium ] || { echo "ERROR: make screenshots needs Chromium at /usr/bin/chromium: apt-get install -y chromium" >&2; exit 1; }
	SCREENSHOTS=1 $(PY) -m pytest -p no:cacheprovider \
	  "tests/browser/test_browser_flow.py::test_browser_flow_from_products_to_the_storefront"
