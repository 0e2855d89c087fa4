#!/usr/bin/env bash
# Who may do what on the compose stack's Kafka cluster. The brokers run the StandardAuthorizer with
# no ACL meaning "denied" (deploy/kafka/start-broker.sh), so each principal gets exactly this:
#
#   the worker   reads the inbound topic in its consumer group; writes the partner and dead-letter
#                topics; may create our topics (it creates them at start) and Faust's own
#                (<app id>-__assignor-__leader)
#   the ingest   writes the inbound topic (the HTTP/EIDO front door for CADs without Kafka)
#   the CAD      writes the inbound topic
#   partners     read the partner topics (decisions, SLA, follow-ups, outcomes) in consumer groups
#                named after themselves (user "county-mh": groups "county-mh-*"); never the inbound
#                topic (phone numbers) or the dead letters (the original bytes)
#
# It also sets every client user's SCRAM password (an upsert: a partner added later, or a rotated
# password, takes effect by re-running this job). Re-running grants nothing twice. A partner removed
# from KAFKA_PARTNERS keeps its grants until they are removed by hand (kafka-acls.sh --remove).
#
# Environment:
#   KAFKA_BOOTSTRAP          a broker to talk to (kafka-1:9092)
#   KAFKA_BROKER_PASSWORD    the brokers' own SCRAM user "broker" (a super user) runs the changes
#   KAFKA_WORKER_PASSWORD, KAFKA_INGEST_PASSWORD, KAFKA_CAD_PASSWORD   the pipeline's own users
#   KAFKA_WORKER_USER, KAFKA_INGEST_USER, KAFKA_CAD_USER   their names (crisis-worker, crisis-ingest, cad)
#   KAFKA_PARTNERS           "name:password name:password", one user per partner system (may be empty)
#   KAFKA_TLS_DIR            holds ca.crt (/etc/crisis/tls)
#   CRISIS_TOPIC_PREFIX, CRISIS_APP_ID   as the worker has them (empty, crisis-pipeline)
#   KAFKA_HOME               the Kafka installation (/opt/kafka)
set -euo pipefail

: "${KAFKA_BOOTSTRAP:?}" "${KAFKA_BROKER_PASSWORD:?}" "${KAFKA_WORKER_PASSWORD:?}" "${KAFKA_INGEST_PASSWORD:?}"
: "${KAFKA_CAD_PASSWORD:?}"
home=${KAFKA_HOME:-/opt/kafka}
tls=${KAFKA_TLS_DIR:-/etc/crisis/tls}
prefix=${CRISIS_TOPIC_PREFIX:-}
app_id=${CRISIS_APP_ID:-crisis-pipeline}
worker=${KAFKA_WORKER_USER:-crisis-worker}
ingest=${KAFKA_INGEST_USER:-crisis-ingest}
cad=${KAFKA_CAD_USER:-cad}

# The topic names of streams/topics.py (a unit test keeps the two lists equal).
inbound="${prefix}crisis.calls.v1"
deadletter="${prefix}crisis.deadletter.v1"
partner_topics=("${prefix}crisis.triage.v1" "${prefix}crisis.sla.v1" "${prefix}crisis.followups.v1"
                "${prefix}crisis.outcomes.v1")

config=$(mktemp -d)/admin.properties
trap 'rm -rf "$(dirname "$config")"' EXIT
umask 077  # the file holds the broker's password
cat > "$config" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$KAFKA_BROKER_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
PROPERTIES

admin=(--bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$config")
# One call per grant: each is a JVM start, so operations and resources go together where they can.
allow() {  # allow PRINCIPAL OPERATIONS... -- RESOURCE ARGS...
  local principal=$1; shift
  local args=()
  while [ "$1" != "--" ]; do args+=(--operation "$1"); shift; done
  shift
  "$home/bin/kafka-acls.sh" "${admin[@]}" --add --allow-principal "User:$principal" "${args[@]}" "$@" >/dev/null
}
topic_args() {  # --topic A --topic B ...
  for topic in "$@"; do printf -- '--topic\n%s\n' "$topic"; done
}

users=("$worker:$KAFKA_WORKER_PASSWORD" "$ingest:$KAFKA_INGEST_PASSWORD" "$cad:$KAFKA_CAD_PASSWORD")
partners=()
read -ra partner_pairs <<< "${KAFKA_PARTNERS:-}"  # split on spaces, no file-name expansion
for pair in "${partner_pairs[@]}"; do
  name=${pair%%:*}
  # A plain name: "User:*" would be every user, and a partner must not take over one of ours.
  if [[ ! $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ || $pair != *:?* ]] \
      || [[ " broker $worker $ingest $cad " == *" $name "* ]]; then
    echo "KAFKA_PARTNERS: '$name' is not a partner user (name:password, name of letters, digits, . _ -," \
      "not one of the pipeline's users)" >&2
    exit 2
  fi
  users+=("$pair")
  partners+=("$name")
done
for pair in "${users[@]}"; do
  "$home/bin/kafka-configs.sh" "${admin[@]}" --alter --entity-type users --entity-name "${pair%%:*}" \
    --add-config "SCRAM-SHA-512=[password=${pair#*:}]" >/dev/null
done

mapfile -t ours < <(topic_args "$inbound" "${partner_topics[@]}" "$deadletter")
mapfile -t written < <(topic_args "${partner_topics[@]}" "$deadletter")
mapfile -t shared < <(topic_args "${partner_topics[@]}")

allow "$worker" Read Describe -- --topic "$inbound" --group "$app_id"
allow "$worker" Write Describe -- "${written[@]}"
allow "$worker" Create DescribeConfigs -- "${ours[@]}"
# Faust's leader-assignor topic, which it creates, writes and reads.
allow "$worker" All -- --resource-pattern-type prefixed --topic "$app_id-"

"$home/bin/kafka-acls.sh" "${admin[@]}" --add --allow-principal "User:$ingest" --allow-principal "User:$cad" \
  --operation Write --operation Describe --topic "$inbound" >/dev/null

for partner in "${partners[@]}"; do
  allow "$partner" Read Describe -- "${shared[@]}"
  allow "$partner" Read Describe -- --resource-pattern-type prefixed --group "$partner-"
done
echo "access granted: worker $worker, ingest $ingest, CAD $cad, partners: ${partners[*]:-none}"
