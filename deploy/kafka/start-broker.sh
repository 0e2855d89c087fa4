#!/usr/bin/env bash
# Starts one node of the compose stack's Kafka cluster (the official apache/kafka image): writes its
# server.properties from the environment, formats its storage the first time with the SCRAM users
# (KRaft keeps SCRAM credentials in its metadata, so they must exist before the first start:
# KIP-900), then runs the broker. Every client listener requires SASL/SCRAM over TLS; controllers
# talk mutual TLS (KRaft cannot use SCRAM between controllers). Nothing answers in clear text.
# Authorization: a request no ACL allows is refused (deploy/kafka/access.sh grants each client its
# part); the brokers' own user and the nodes' certificates are the only super users.
#
# Environment: KAFKA_NODE_ID, CLUSTER_ID, KAFKA_CONTROLLER_QUORUM_VOTERS, KAFKA_HOST_PORT (the
# port published on the host's loopback), KAFKA_BROKER_PASSWORD (the brokers' own user),
# KAFKA_SCRAM_USERS ("name:password name:password", the clients), and optionally KAFKA_HOME,
# KAFKA_TLS_DIR, KAFKA_DATA_DIR, KAFKA_CONFIG_DIR, KAFKA_HOSTNAME, KAFKA_LISTEN_HOST,
# KAFKA_REPLICATION_FACTOR (3) and KAFKA_MIN_INSYNC_REPLICAS (2) for the brokers' own topics
# (consumer offsets, transactions; the test runs this script as a one-node cluster with 1 and 1).
set -euo pipefail

: "${KAFKA_NODE_ID:?}" "${CLUSTER_ID:?}" "${KAFKA_CONTROLLER_QUORUM_VOTERS:?}" "${KAFKA_BROKER_PASSWORD:?}"
home=${KAFKA_HOME:-/opt/kafka}
tls=${KAFKA_TLS_DIR:-/etc/crisis/tls}
data=${KAFKA_DATA_DIR:-/var/lib/kafka/data}
config_dir=${KAFKA_CONFIG_DIR:-/tmp/crisis-kafka}
host=${KAFKA_HOSTNAME:-kafka-$KAFKA_NODE_ID}
listen=${KAFKA_LISTEN_HOST:-}
internal_port=${KAFKA_INTERNAL_PORT:-9092}
controller_port=${KAFKA_CONTROLLER_PORT:-9093}
external_port=${KAFKA_EXTERNAL_PORT:-9094}
host_port=${KAFKA_HOST_PORT:-$external_port}
replicas=${KAFKA_REPLICATION_FACTOR:-3}
min_insync=${KAFKA_MIN_INSYNC_REPLICAS:-2}

for file in "$tls/ca.crt" "$tls/$host.pem"; do
  [ -r "$file" ] || { echo "missing $file: run deploy/tls/make-certs.sh first (README, Production)" >&2; exit 1; }
done
mkdir -p "$config_dir"
config=$config_dir/server.properties
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\" password=\"$KAFKA_BROKER_PASSWORD\";"
# Super users: the brokers' SCRAM user (between brokers) and each voter's certificate (CN=host, the
# mutual-TLS principal of controller traffic).
super_users="User:broker"
IFS=',' read -ra voters <<< "$KAFKA_CONTROLLER_QUORUM_VOTERS"
for voter in "${voters[@]}"; do
  voter_host=${voter#*@}
  super_users+=";User:CN=${voter_host%:*}"
done
umask 077  # the files below hold passwords
cat > "$config" <<PROPERTIES
node.id=$KAFKA_NODE_ID
process.roles=broker,controller
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
listeners=INTERNAL://$listen:$internal_port,CONTROLLER://$listen:$controller_port,EXTERNAL://$listen:$external_port
advertised.listeners=INTERNAL://$host:$internal_port,EXTERNAL://localhost:$host_port
listener.security.protocol.map=INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=$jaas
listener.name.external.scram-sha-512.sasl.jaas.config=$jaas
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$tls/$host.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
log.dirs=$data
num.partitions=4
default.replication.factor=$replicas
min.insync.replicas=$min_insync
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_insync
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=3000
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=$super_users
PROPERTIES

# The client settings the healthcheck uses (kafka-broker-api-versions.sh --command-config).
cat > "$config_dir/client.properties" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
PROPERTIES

scram=(--add-scram "SCRAM-SHA-512=[name=broker,password=$KAFKA_BROKER_PASSWORD]")
for pair in ${KAFKA_SCRAM_USERS:-}; do
  scram+=(--add-scram "SCRAM-SHA-512=[name=${pair%%:*},password=${pair#*:}]")
done
# Only the first start formats: later starts keep the data and the users (add users with kafka-configs.sh).
"$home/bin/kafka-storage.sh" format --ignore-formatted -t "$CLUSTER_ID" -c "$config" "${scram[@]}" >/dev/null
exec "$home/bin/kafka-server-start.sh" "$config"
