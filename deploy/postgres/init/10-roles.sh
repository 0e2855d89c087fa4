#!/usr/bin/env bash
# First start of the compose stack's PostgreSQL only (the image runs /docker-entrypoint-initdb.d on an
# empty data directory): the database's owner, who runs the migrations, and one login in each
# NOLOGIN role of migration 004, every password from the environment. The migration creates the
# same roles if they are missing and grants them their privileges; this script grants nothing.
set -euo pipefail
: "${CRISIS_DB_OWNER_PASSWORD:?}" "${CRISIS_DB_WORKER_PASSWORD:?}" "${CRISIS_DB_REPORTS_PASSWORD:?}"
: "${CRISIS_DB_AUDITOR_PASSWORD:?}" "${CRISIS_DB_RETENTION_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-crisis}" \
  -v db="${POSTGRES_DB:-crisis}" \
  -v owner_password="$CRISIS_DB_OWNER_PASSWORD" -v worker_password="$CRISIS_DB_WORKER_PASSWORD" \
  -v reports_password="$CRISIS_DB_REPORTS_PASSWORD" -v auditor_password="$CRISIS_DB_AUDITOR_PASSWORD" \
  -v retention_password="$CRISIS_DB_RETENTION_PASSWORD" <<'SQL'
CREATE ROLE crisis_owner LOGIN PASSWORD :'owner_password';
ALTER DATABASE :"db" OWNER TO crisis_owner;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
CREATE ROLE crisis_worker NOLOGIN;
CREATE ROLE crisis_reader NOLOGIN;
CREATE ROLE crisis_auditor NOLOGIN;
CREATE ROLE crisis_retention NOLOGIN;
GRANT CONNECT ON DATABASE :"db" TO crisis_owner, crisis_worker, crisis_reader, crisis_auditor, crisis_retention;
CREATE ROLE crisis_app LOGIN PASSWORD :'worker_password' IN ROLE crisis_worker;
CREATE ROLE crisis_reports LOGIN PASSWORD :'reports_password' IN ROLE crisis_reader;
CREATE ROLE crisis_audit LOGIN PASSWORD :'auditor_password' IN ROLE crisis_auditor;
CREATE ROLE crisis_purge LOGIN PASSWORD :'retention_password' IN ROLE crisis_retention;
SQL
