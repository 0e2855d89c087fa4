# Two entry points for a newcomer: `make demo` and `make test`. Each builds its own virtualenv
# with pinned dependencies (requirements.lock) on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint deps bench chaos clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

## Run the whole pipeline on an embedded broker and Postgres; prints a summary.
demo: $(STAMP)
	$(BIN)/crisis demo

## Java and Maven run the real Apache Kafka broker the integration tests use; the prometheus package brings
## promtool (tests the alert rules) and the Prometheus server a test scrapes a worker with; Node and npm run the
## official AsyncAPI parser on docs/asyncapi.json; headless Chromium renders the HTML outcomes report for its
## screenshot test; Debian's PostgreSQL (built with OpenSSL, unlike the embedded one) serves the TLS test and
## openssl makes its certificates. Only missing packages are installed: a Node.js from another source
## (NodeSource's bundles npm) conflicts with Debian's npm package.
deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing="$$missing prometheus"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## Lint and type-check, then the whole suite: unit tests, scenarios, then integration tests on Apache Kafka + PostgreSQL.
## In TEST_PROCESSES processes (pytest-xdist), each with its own broker and database, a test file whole
## in one of them (a file's module fixtures start once): the suite mostly waits on services and fault
## schedules, so two processes on two cores take about 6 minutes where one took 10.
TEST_PROCESSES ?= 2
test: $(STAMP) deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

bench: $(STAMP)
	$(BIN)/crisis bench --json

## The fault-injection suite at full size (100,000 events per scenario, 6 faults, 30 s outages, the
## three-broker cluster too); writes the README's Reliability table. Long: about half an hour on 2 cores.
chaos: $(STAMP) deps
	$(BIN)/crisis chaos --readme README.md

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .hypothesis
