#!/usr/bin/env bash
# Apache Kafka 4 (KRaft, one combined broker+controller, node.id 1) from Maven Central, in .stack/kafka.
#   PLAINTEXT://127.0.0.1:$KAFKA_PORT        inter-broker and local tools
#   SASL_SSL://localhost:$KAFKA_SASL_PORT    PLAIN, user '$ConnectionString', password = the
#                                            Event Hubs-style connection string (as Azure Event Hubs)
#   CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
# Usage: kafka.sh start|stop|status|topics
# Topics: $KAFKA_TOPICS, comma separated name:partitions (default clickstream:4).
source "$(dirname "$0")/common.sh"

KAFKA_HOME="$STACK_DIR/kafka"
KAFKA_LIB="$KAFKA_HOME/lib"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_TLS="$KAFKA_HOME/tls"
KAFKA_PROPS="$KAFKA_HOME/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_HOME/cluster.id"
KAFKA_PID="$RUN_DIR/kafka.pid"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_TOPICS="${KAFKA_TOPICS:-clickstream:4}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
JAVA="${JAVA:-java}"
PLAIN_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
SASL_BOOTSTRAP="localhost:$KAFKA_SASL_PORT"

# --- helpers ----------------------------------------------------------------------------------

random_secret() { head -c "${1:-32}" /dev/urandom | base64 | tr -d '\n'; }

# set_secret_once NAME VALUE: write only when the stored value differs (keeps the file untouched).
set_secret_once() { [ "$(secret_get "$1")" = "$2" ] || secret_set "$1" "$2"; }

# kafka_java CLASS ARGS...: run a Kafka tool class with the broker's classpath, quiet logging.
kafka_java() {
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2-tools.xml" \
    -cp "$KAFKA_LIB/*" "$@"
}

ensure_jars() {
  if ls "$KAFKA_LIB"/kafka_2.13-*.jar >/dev/null 2>&1 && ls "$KAFKA_LIB"/kafka-tools-*.jar >/dev/null 2>&1; then
    return 0
  fi
  command -v mvn >/dev/null || die "kafka: Maven (mvn) is needed to resolve the broker jars"
  log "kafka: resolving the broker jars from Maven Central into $KAFKA_LIB"
  mkdir -p "$KAFKA_LIB"
  mvn -B -q -s "$JVM_DIR/settings.xml" -f "$JVM_DIR/pom.xml" -P kafka dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIB" -DincludeScope=runtime >"$LOG_DIR/kafka-mvn.log" 2>&1 \
    || die "kafka: Maven could not resolve the jars (see $LOG_DIR/kafka-mvn.log)"
}

write_if_changed() { # write_if_changed FILE MODE: stdin -> FILE, only when the content differs
  local file="$1" mode="$2" tmp
  tmp="$(mktemp "$KAFKA_HOME/.tmp.XXXXXX")"
  cat >"$tmp"; chmod "$mode" "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; fi
}

write_log4j_configs() {
  write_if_changed "$KAFKA_HOME/log4j2.xml" 644 <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Broker logging: to stdout, which kafka.sh appends to $LOG_DIR/kafka.log -->
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.common.network.Selector" level="INFO"/>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
XML
  write_if_changed "$KAFKA_HOME/log4j2-tools.xml" 644 <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="STDERR"/></Root></Loggers>
</Configuration>
XML
}

# Self-signed certificate (CN/SAN localhost, 127.0.0.1) in a PKCS12 keystore for the broker,
# its PEM for librdkafka (ssl.ca.location) and a PKCS12 truststore for Java clients.
ensure_tls() {
  local ks="$KAFKA_TLS/keystore.p12" ts="$KAFKA_TLS/truststore.p12" pem="$KAFKA_TLS/ca.pem"
  if [ -f "$ks" ] && [ -f "$ts" ] && [ -f "$pem" ] \
     && [ -n "$(secret_get KAFKA_KEYSTORE_PASSWORD)" ] && [ -n "$(secret_get Kafka-Truststore-Password)" ]; then
    return 0
  fi
  command -v keytool >/dev/null || die "kafka: keytool (Java) is needed to create the TLS certificate"
  log "kafka: creating a self-signed TLS certificate in $KAFKA_TLS"
  rm -rf "$KAFKA_TLS"; mkdir -p "$KAFKA_TLS"; chmod 700 "$KAFKA_TLS"
  local KS_PASS TS_PASS
  KS_PASS="$(random_secret 24 | tr -d '/+=')"
  TS_PASS="$(random_secret 24 | tr -d '/+=')"
  export KS_PASS TS_PASS   # handed to keytool via :env, never on a command line
  keytool -genkeypair -alias kafka -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=localhost, OU=clickstream-pipeline local stack" \
    -ext "SAN=dns:localhost,ip:127.0.0.1" -ext "BC:c=ca:true" \
    -storetype PKCS12 -keystore "$ks" -storepass:env KS_PASS >/dev/null 2>&1 \
    || die "kafka: keytool -genkeypair failed"
  keytool -exportcert -rfc -alias kafka -keystore "$ks" -storetype PKCS12 -storepass:env KS_PASS \
    -file "$pem" >/dev/null 2>&1 || die "kafka: keytool -exportcert failed"
  keytool -importcert -noprompt -alias kafka-ca -file "$pem" -storetype PKCS12 -keystore "$ts" \
    -storepass:env TS_PASS >/dev/null 2>&1 || die "kafka: keytool -importcert failed"
  chmod 600 "$ks"; chmod 644 "$pem" "$ts"
  secret_set KAFKA_KEYSTORE_PASSWORD "$KS_PASS"
  secret_set Kafka-Truststore-Password "$TS_PASS"
  unset KS_PASS TS_PASS
}

ensure_connection_string() {
  if [ -z "$(secret_get Kafka-Connection-String)" ]; then
    log "kafka: creating the Event Hubs-style connection string (secret Kafka-Connection-String)"
    secret_set Kafka-Connection-String \
      "Endpoint=sb://localhost/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=$(random_secret 32)"
  fi
  set_secret_once Kafka-Server "$SASL_BOOTSTRAP"
}

write_server_properties() {
  local conn ks_pass
  conn="$(secret_get Kafka-Connection-String)"
  ks_pass="$(secret_get KAFKA_KEYSTORE_PASSWORD)"
  case "$conn$ks_pass" in *'"'* | *'\'* | *$'\n'*) die "kafka: unexpected character in a stored secret" ;; esac
  # Java properties: '$', ';' and '=' need no escaping in a value; the JAAS value is in double quotes.
  write_if_changed "$KAFKA_PROPS" 600 <<PROPS
# Generated by scripts/stack/kafka.sh: edits are overwritten. Holds secrets (mode 600).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://localhost:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://localhost:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT

# SASL_SSL: PLAIN only, the Azure Event Hubs form (username \$ConnectionString, password = connection string)
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_\$ConnectionString="$conn";
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS/keystore.p12
listener.name.sasl_ssl.ssl.keystore.password=$ks_pass
listener.name.sasl_ssl.ssl.client.auth=none

log.dirs=$KAFKA_DATA
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
PROPS
}

ensure_formatted() {
  [ -f "$KAFKA_DATA/meta.properties" ] && return 0
  local cid
  if [ -s "$KAFKA_CLUSTER_ID_FILE" ]; then
    cid="$(cat "$KAFKA_CLUSTER_ID_FILE")"
  else
    cid="$(kafka_java kafka.tools.StorageTool random-uuid)" || die "kafka: could not create a cluster id"
    printf '%s\n' "$cid" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  log "kafka: formatting $KAFKA_DATA (KRaft cluster id $cid)"
  kafka_java kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_PROPS" >>"$LOG_DIR/kafka-format.log" 2>&1 \
    || die "kafka: storage format failed (see $LOG_DIR/kafka-format.log)"
}

plaintext_up() { kcat -b "$PLAIN_BOOTSTRAP" -L -m 5 >/dev/null 2>&1; }

# sasl_client_conf: print the path of a librdkafka config file (mode 600) for the SASL_SSL listener.
# Passed with kcat -F so the password never appears on a command line.
sasl_client_conf() {
  local f="$KAFKA_HOME/kcat-sasl.conf"
  write_if_changed "$f" 600 <<CONF
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=\$ConnectionString
sasl.password=$(secret_get Kafka-Connection-String)
ssl.ca.location=$KAFKA_TLS/ca.pem
CONF
  printf '%s\n' "$f"
}

sasl_up() { kcat -F "$(sasl_client_conf)" -b "$SASL_BOOTSTRAP" -L -m 5 >/dev/null 2>&1; }

# --- commands ---------------------------------------------------------------------------------

start() {
  if pid_alive "$KAFKA_PID"; then
    log "kafka: already running (pid $(cat "$KAFKA_PID"), $PLAIN_BOOTSTRAP, $SASL_BOOTSTRAP) (nothing changed)"
    return 0
  fi
  rm -f "$KAFKA_PID"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$p" && die "kafka: port $p is already in use by another process"
  done
  command -v "$JAVA" >/dev/null || die "kafka: java not found"
  command -v kcat >/dev/null || die "kafka: kcat not found (apt-get install kcat)"
  mkdir -p "$KAFKA_HOME" "$KAFKA_DATA"
  ensure_jars
  write_log4j_configs
  ensure_tls
  ensure_connection_string
  write_server_properties
  ensure_formatted

  local t0=$SECONDS
  # setsid: own session, so the broker survives the calling shell; nohup for SIGHUP.
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.xml" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"

  local i
  for ((i = 0; i < 90; i++)); do
    pid_alive "$KAFKA_PID" || { rm -f "$KAFKA_PID"; die "kafka: broker exited during start-up (see $KAFKA_LOG)"; }
    plaintext_up && break
    sleep 1
  done
  plaintext_up || die "kafka: broker did not come up within 90s (see $KAFKA_LOG)"
  wait_for "kafka SASL_SSL listener" 30 sasl_up
  log "kafka: running (pid $(cat "$KAFKA_PID")) in $((SECONDS - t0))s: PLAINTEXT $PLAIN_BOOTSTRAP, SASL_SSL $SASL_BOOTSTRAP, data $KAFKA_DATA, log $KAFKA_LOG"
  topics
}

topics() {
  plaintext_up || die "kafka: not running (start it first)"
  local existing spec name parts specs
  existing="$(kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN_BOOTSTRAP" --list)" \
    || die "kafka: could not list topics"
  IFS=',' read -r -a specs <<<"$KAFKA_TOPICS"
  for spec in "${specs[@]}"; do
    spec="${spec// /}"; [ -n "$spec" ] || continue
    name="${spec%%:*}"; parts="${spec#*:}"; [ "$parts" = "$spec" ] && parts=4
    [[ "$parts" =~ ^[0-9]+$ ]] || die "kafka: bad topic spec '$spec' (want name:partitions)"
    if grep -qxF "$name" <<<"$existing"; then
      log "kafka: topic $name exists"
    else
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAIN_BOOTSTRAP" --create \
        --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 >/dev/null \
        || die "kafka: could not create topic $name"
      log "kafka: topic $name created ($parts partitions)"
    fi
  done
}

stop() {
  stop_pidfile kafka "$KAFKA_PID"
  local p i
  for p in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT"; do
    for ((i = 0; i < 15; i++)); do port_open "$p" || break; sleep 1; done
    port_open "$p" && die "kafka: port $p is still in use after stop"
  done
  return 0
}

status() {
  if ! pid_alive "$KAFKA_PID"; then
    log "kafka: DOWN (ports $KAFKA_PORT plaintext, $KAFKA_SASL_PORT sasl_ssl, $KAFKA_CONTROLLER_PORT controller)"
    return 1
  fi
  local rc=0 plain sasl
  if plain="$(kcat -b "$PLAIN_BOOTSTRAP" -L -m 5 2>&1)"; then
    plain="ok ($(grep -c '^  topic "' <<<"$plain") topics)"
  else plain="FAILED"; rc=1; fi
  if sasl="$(kcat -F "$(sasl_client_conf)" -b "$SASL_BOOTSTRAP" -L -m 5 2>&1)"; then
    sasl="ok ($(grep -c '^  topic "' <<<"$sasl") topics)"
  else sasl="FAILED"; rc=1; fi
  log "kafka: UP   pid $(cat "$KAFKA_PID"), controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, data $KAFKA_DATA"
  log "kafka:      PLAINTEXT $PLAIN_BOOTSTRAP: $plain"
  log "kafka:      SASL_SSL  $SASL_BOOTSTRAP (PLAIN, user \$ConnectionString, CA $KAFKA_TLS/ca.pem): $sasl"
  return "$rc"
}

case "${1:-}" in
  start) start ;; stop) stop ;; status) status ;; topics) topics ;;
  *) die "usage: $0 start|stop|status|topics" ;;
esac
