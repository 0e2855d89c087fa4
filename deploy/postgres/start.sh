#!/usr/bin/env bash
# Starts the compose stack's PostgreSQL with TLS required: PostgreSQL refuses a key file others can
# read, so the mounted key is copied with the right owner and mode first; then the image's own
# entrypoint runs (initialisation on first start, then the server as the postgres user).
set -euo pipefail
tls=${CRISIS_TLS_DIR:-/etc/crisis/tls}
for file in "$tls/postgres.crt" "$tls/postgres.key" "$tls/ca.crt"; do
  [ -r "$file" ] || { echo "missing $file: run deploy/tls/make-certs.sh first (README, Production)" >&2; exit 1; }
done
install -d -m 0700 -o postgres -g postgres /var/lib/postgresql/tls
install -m 0600 -o postgres -g postgres "$tls/postgres.key" /var/lib/postgresql/tls/server.key
install -m 0644 -o postgres -g postgres "$tls/postgres.crt" /var/lib/postgresql/tls/server.crt
cat > /var/lib/postgresql/tls/pg_hba.conf <<'HBA'
# Inside the container only (initialisation scripts, docker exec, which already means full control):
# the socket. From the network: TLS and a SCRAM password; clear-text connections are refused.
local     all all                trust
hostssl   all all 0.0.0.0/0      scram-sha-256
hostssl   all all ::/0           scram-sha-256
hostnossl all all 0.0.0.0/0      reject
hostnossl all all ::/0           reject
HBA
chown postgres:postgres /var/lib/postgresql/tls/pg_hba.conf
exec docker-entrypoint.sh postgres -c ssl=on -c ssl_cert_file=/var/lib/postgresql/tls/server.crt \
  -c ssl_key_file=/var/lib/postgresql/tls/server.key -c hba_file=/var/lib/postgresql/tls/pg_hba.conf \
  -c password_encryption=scram-sha-256
