# Two entry points: `make dev` runs the portal locally, `make test` runs every test.
# Both install what is missing first and skip what is already installed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: dev test deps

deps: $(VENV)/.requirements-installed node_modules/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the pinned lists change.
$(VENV)/.requirements-installed: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# DJANGO_DEBUG=1 turns on the development conveniences, among them the filesystem broker
# when no Redis answers (portal/settings.py decides and dev_bootstrap reports it).
dev: export DJANGO_DEBUG ?= 1
dev: deps
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py dev_bootstrap
	exec $(VENV)/bin/honcho --procfile Procfile.dev start

test: deps
	$(VENV)/bin/pytest
