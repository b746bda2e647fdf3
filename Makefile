# XGet developer commands. `make setup` once on a fresh machine, then `make up` / `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
export PYTHONPATH := $(CURDIR)

.PHONY: setup system-packages lint up down status run test test-fast bench bench-media bench-accounts bench-gateway schemas manifests bench-telemetry bench-soak bench-scale

setup: system-packages $(BIN)/xget web/dist/index.html  ## system packages, the virtualenv (XGet, chdb, local brokers, S3 server, checks) and the built web console

system-packages:  ## chromium, docker-compose, nodejs and npm where missing (Debian)
	@bash infra/system-packages.sh

# The web console (web/, served by the gateway at /console/): npm ci when the lock file
# changes, a build when a source does. Node and npm from the machine (system-packages).
WEB_SRC := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund
web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SRC)
	cd web && npm run build

$(BIN)/xget: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,local,test,dev]'
	@touch $@

lint: setup  ## ruff (lint and format), mypy, hadolint: what .ci/run checks before the tests
	$(BIN)/ruff check libs services infra bench tests
	$(BIN)/ruff format --check libs services infra bench tests
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

up: setup  ## start broker, topics, migrations, X simulator and every service (embedded defaults)
	$(BIN)/python -m infra.stack up

down:  ## stop what `make up` started
	$(BIN)/python -m infra.stack down

status:
	$(BIN)/python -m infra.stack status

test: setup  ## the whole suite against real local infrastructure
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest -q tests/unit

bench: setup  ## end-to-end pipeline rate vs bare parsing (last line: ratio)
	$(BIN)/python bench/pipeline.py

bench-scale: setup  ## pipeline ratio at 1M posts ÷ at 10k, RSS growth, broker peak vs budget (last line: ratio)
	$(BIN)/python bench/scale.py

bench-media: setup  ## media stored through the media-downloader vs bare httpx download (last line: ratio)
	$(BIN)/python bench/media.py

bench-gateway: setup  ## task submissions/s and latency vs a bare FastAPI endpoint (last line: ratio)
	$(BIN)/python bench/gateway.py

bench-accounts: setup  ## account utilisation with 2 scraper replicas vs the limits' maximum
	$(BIN)/python bench/accounts.py

schemas: setup  ## regenerate schemas/*.avsc from the record models
	$(BIN)/python -m libs.records.avro

bench-soak: setup  ## posts stored and reported exactly once while services crash and dependencies go down (last line: ratio)
	$(BIN)/python bench/soak.py

bench-telemetry: setup  ## pipeline rate with tracing+metrics on ÷ off (last line: ratio)
	$(BIN)/python bench/telemetry.py

manifests: setup  ## regenerate infra/k8s/*.yaml from infra/workloads.py and the topic catalogue
	$(BIN)/python -m infra.k8s_manifests
