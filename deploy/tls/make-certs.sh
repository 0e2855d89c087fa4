#!/usr/bin/env bash
# A private CA and TLS certificates (PEM) for the compose stack's brokers and Postgres, or any host.
#
#   deploy/tls/make-certs.sh OUT_DIR NAME SUBJECT_ALT_NAMES [NAME SUBJECT_ALT_NAMES ...]
#   deploy/tls/make-certs.sh deploy/tls/out \
#       kafka-1 DNS:kafka-1,DNS:localhost kafka-2 DNS:kafka-2,DNS:localhost kafka-3 DNS:kafka-3,DNS:localhost \
#       postgres DNS:postgres,DNS:localhost
#
# Writes OUT_DIR/ca.crt (what clients trust: KAFKA_SSL_CAFILE, sslrootcert=) and, per NAME,
# NAME.crt + NAME.key (Postgres) and NAME.pem (Kafka's PEM keystore: the key, then the chain).
# The CA is made once and reused, so certificates added later are trusted by the same clients.
# Keep OUT_DIR out of version control (deploy/tls/out is ignored) and its keys private: in
# production take certificates from your own CA or secret store instead.
set -euo pipefail

if [ $# -lt 3 ] || [ $(( ($# - 1) % 2 )) -ne 0 ]; then
  echo "usage: $0 OUT_DIR NAME SUBJECT_ALT_NAMES [NAME SUBJECT_ALT_NAMES ...]" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 2; }
out=$1
shift
mkdir -p "$out"
if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=crisis-pipeline private CA" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi
while [ $# -gt 0 ]; do
  name=$1 sans=$2
  shift 2
  openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=$name" \
    -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' \
    "$sans" > "$out/$name.ext"
  openssl x509 -req -sha256 -days 825 -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -extfile "$out/$name.ext" -out "$out/$name.crt" 2>/dev/null
  # Kafka reads an unencrypted PKCS#8 key followed by the certificate chain from one PEM file.
  openssl pkcs8 -topk8 -nocrypt -in "$out/$name.key" -out "$out/$name.pk8"
  cat "$out/$name.pk8" "$out/$name.crt" "$out/ca.crt" > "$out/$name.pem"
  rm -f "$out/$name.csr" "$out/$name.ext" "$out/$name.pk8"
  # Readable by the containers' own users (Kafka runs as appuser, Postgres copies its key at start).
  chmod 0644 "$out/$name.crt" "$out/$name.key" "$out/$name.pem"
  echo "$out/$name.crt ($sans)"
done
chmod 0644 "$out/ca.crt"
chmod 0600 "$out/ca.key"
