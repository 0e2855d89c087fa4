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

## Java and Maven run the real Apache Kafka broker the integration tests use; promtool tests the alert rules;
## Debian's PostgreSQL (built with OpenSSL, unlike the embedded one) serves the TLS test; openssl makes its certificates.
deps:
	@command -v java >/dev/null && command -v mvn >/dev/null && command -v promtool >/dev/null \
	  && command -v openssl >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "installing Java 17, Maven, promtool, OpenSSL and PostgreSQL (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    openjdk-17-jre-headless maven prometheus openssl postgresql >/dev/null; }

## Lint, then the whole suite: unit tests, then integration tests on Apache Kafka + PostgreSQL.
test: $(STAMP) deps
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/crisis bench --json

## The fault-injection suite at full size (100,000 events per scenario, 6 faults, 30 s outages, the
## three-broker cluster too); writes the README's Reliability table. Long: about half an hour on 2 cores.
chaos: $(STAMP) deps
	$(BIN)/crisis chaos --readme README.md

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .hypothesis
