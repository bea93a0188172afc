# Two entry points: `make dev` runs the portal locally, `make test` runs every test.
# Both install what is missing first and skip what is already installed.
# Also: `make lint` (ruff and mypy, settings in pyproject.toml) and `make bench-smoke` (every bench script, small).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: dev test deps lint bench-smoke

deps: $(VENV)/.requirements-installed node_modules/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the pinned lists change. requirements-dev.txt includes requirements.txt.
$(VENV)/.requirements-installed: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	touch $@

# npm ci first empties node_modules; when that is a link (worktrees sharing one checkout's packages) it would empty
# the other checkout's, under whatever runs from it. Then the packages are installed where the link points.
node_modules/.installed: package.json package-lock.json
	@if [ -L node_modules ]; then \
	  echo "node_modules links to $$(readlink -f node_modules): not reinstalling through the link;" \
	       "run npm ci there if package-lock.json changed" >&2; \
	else npm ci --no-audit --no-fund; fi
	touch $@

# DJANGO_DEBUG=1 turns on the development conveniences, among them the filesystem broker
# when no Redis answers (portal/settings.py decides and dev_bootstrap reports it). dev_run runs
# Procfile.dev and stops all of it within 5 s of Ctrl-C, or of SIGINT/SIGTERM to make alone.
dev: export DJANGO_DEBUG ?= 1
dev: deps
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py dev_bootstrap
	exec $(PY) manage.py dev_run --procfile Procfile.dev

test: deps
	$(VENV)/bin/pytest

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Every script in bench/ (the `_` modules are their shared parts) with --smoke: tiny sizes through the same
# processes, seconds each, so none rots. Found by name, so a new script cannot be left out; fails if any fails.
# They need PostgreSQL (bench/README.md says which database) and Redis, as the tests in CI do.
BENCH_SCRIPTS := $(sort $(filter-out bench/_%,$(wildcard bench/*.py)))

bench-smoke: deps
	@failed=""; \
	for script in $(BENCH_SCRIPTS); do \
	  echo "== $$script --smoke"; started=$$(date +%s); \
	  if timeout 600 $(PY) $$script --smoke; then outcome=passed; else outcome=FAILED; failed="$$failed $$script"; fi; \
	  echo "== $$script $$outcome in $$(( $$(date +%s) - started )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "bench-smoke: failed:$$failed" >&2; exit 1; fi; \
	echo "bench-smoke: $(words $(BENCH_SCRIPTS)) scripts passed"
