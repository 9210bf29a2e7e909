#!/usr/bin/env bash
# Resolve the JVM dependencies declared in jvm/pom.xml (profile "spark") into .stack/jars with
# Maven, leaving out jars that pyspark already ships, so Spark runs need no network.
# Re-resolves only when jvm/pom.xml or the pyspark version changed.
# Another jar set (scripts/lane.sh): VENV (its pyspark's jars are left out), JARS_DIR, JARS_POM
# (a pom with the "spark" profile) and JARS_MAVEN_ARGS (-Dproperty=value ...).
source "$(dirname "$0")/stack/common.sh"

POM="${JARS_POM:-$JVM_DIR/pom.xml}"
read -ra MAVEN_ARGS <<<"${JARS_MAVEN_ARGS:-}"

PYSPARK_JARS="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
STAMP="$JARS_DIR/.resolved"
want="$({ cat "$POM" "$JVM_DIR/settings.xml"; printf %s "${JARS_MAVEN_ARGS:-}"; } | sha256sum | cut -c1-16)-$(basename "$(ls "$PYSPARK_JARS"/spark-core_*.jar)")"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "jars: $(ls "$JARS_DIR"/*.jar | wc -l) jars in $JARS_DIR are current (nothing changed)"
  exit 0
fi

rm -rf "$JARS_DIR"; mkdir -p "$JARS_DIR"
log "jars: resolving Spark's Kafka connector, Delta, S3A, ABFS and the PostgreSQL driver with Maven"
mvn -B -q -s "$JVM_DIR/settings.xml" -f "$POM" -P spark "${MAVEN_ARGS[@]}" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$JARS_DIR"

# artifact name without its version: hadoop-client-api-3.4.1.jar -> hadoop-client-api
artifact() { basename "$1" .jar | sed -E 's/-[0-9][0-9A-Za-z.+_-]*$//'; }
declare -A shipped=()
for jar in "$PYSPARK_JARS"/*.jar; do shipped["$(artifact "$jar")"]=1; done
dropped=0
for jar in "$JARS_DIR"/*.jar; do
  if [ -n "${shipped[$(artifact "$jar")]:-}" ]; then rm -f "$jar"; dropped=$((dropped + 1)); fi
done
echo "$want" >"$STAMP"
log "jars: $(ls "$JARS_DIR"/*.jar | wc -l) jars in $JARS_DIR ($dropped left out: pyspark ships them)"
