# imchat: `make run` (embedded default, no services) and `make test` (the whole suite,
# real services included). Every target does its own set-up on a fresh clone.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements/base.txt requirements/production.txt requirements/bench.txt requirements/dev.txt
HOST ?= 127.0.0.1
PORT ?= 8000
COMPOSE_INFRA := docker compose -f deploy/docker/docker-compose.infra.yml
COMPOSE_APP := docker compose -f deploy/docker/docker-compose.infra.yml -f deploy/docker/docker-compose.yml

.PHONY: venv run test test-unit lint format services-up services-down services-status \
	db-upgrade db-sample im-db-rollback im-db-status im-db-validate im-db-diff topics \
	check-infra infra-up infra-down app-up clean run-prod bench

venv: $(STAMP)

$(STAMP): $(REQS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imchat needs Python >= 3.11: set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

## run: the embedded default on http://$(HOST):$(PORT) (SQLite under ./var, in-process twins)
run: venv
	$(PY) -m imchat db upgrade
	$(PY) app.py --host $(HOST) --port $(PORT)

## run-prod: the Procfile set (web, consumer, worker, beat, flower) on the local services,
## configured by deploy/local.env: MariaDB database `imchat` (created if missing, migrated),
## Redis, the Kafka-protocol broker, etcd; services not running are started first.
run-prod: venv
	scripts/test-services up
	mkdir -p var
	set -a && . deploy/local.env && set +a && \
		rm -rf "$$IMCHAT_METRICS_DIR" && \
		$(PY) -c "$$RUN_PROD_CREATE_DB" && \
		$(PY) -m imchat db upgrade && \
		$(PY) -m imchat create-topics
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -e deploy/local.env

# CREATE DATABASE IF NOT EXISTS for IMCHAT_DATABASE_URL (alembic needs the database to exist).
define RUN_PROD_CREATE_DB
import os
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
url = make_url(os.environ["IMCHAT_DATABASE_URL"])
engine = create_engine(url.set(database=""))
with engine.connect() as conn:
    conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4"))
endef
export RUN_PROD_CREATE_DB

## test: lint, start the real services if needed, run the whole suite, stop what was started
test: venv
	bash scripts/run-tests

test-unit: venv
	$(PY) -m pytest -m "unit" -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

services-up: venv
	scripts/test-services up
services-down:
	scripts/test-services down
services-status:
	scripts/test-services status

## bench: the benchmark (ceiling + embedded + production), then docs/benchmarks.md and .png
bench: venv
	$(PY) -m benchmarks run --profile
	$(PY) -m benchmarks report

## Database migrations (Alembic; the seed's Liquibase targets keep their names)
db-upgrade: venv
	$(PY) -m imchat db upgrade
db-sample: venv
	$(PY) -m imchat db upgrade --sample-data
im-db-rollback: venv
	$(PY) -m imchat db downgrade -1
im-db-status: venv
	$(PY) -m imchat db status
im-db-validate: venv
	$(PY) -m imchat db check
im-db-diff: venv
	$(PY) -m imchat db check

topics: venv
	$(PY) -m imchat create-topics

check-infra: venv
	scripts/check-infra

## Docker (production-like hosts; no Docker engine runs on the CI machines)
infra-up:
	$(COMPOSE_INFRA) up -d
	$(COMPOSE_INFRA) up kafka-init im-migrate
infra-down:
	$(COMPOSE_INFRA) down
app-up:
	$(COMPOSE_APP) up -d

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
