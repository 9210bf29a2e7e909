#!/usr/bin/env bash
# A second runtime lane beside .venv: Spark 4.1 on Python 3.12, as Databricks Runtime 18 LTS;
# safe to run again (a current lane only checks).
#   1. .venv-lane on Python 3.12 (PYTHON312, else pyenv's 3.12.1) with the package (editable) and
#      its local, dev and dashboard extras, pyspark and delta-spark as conf/lane-overrides.txt pins
#   2. the JVM jars of that Spark and Delta into .stack/jars-lane (scripts/jars.sh, with
#      jvm/pom.xml's "spark" profile at the lane's versions)
# The lane's sessions run without a class archive (.stack/class-archive holds the main jar set's,
# and a session of another jar set would replace it): run them with `scripts/lane.sh env`'s
# variables, as `make lane` does.
source "$(dirname "$0")/stack/common.sh"

LANE_VENV="$PROJECT_DIR/.venv-lane"
LANE_JARS_DIR="$STACK_DIR/jars-lane"
OVERRIDES="$PROJECT_DIR/conf/lane-overrides.txt"

if [ "${1:-}" = env ]; then
  echo "CLICKSTREAM__SPARK__JARS_DIR=$LANE_JARS_DIR CLICKSTREAM__SPARK__CLASS_ARCHIVE=false"
  exit 0
fi
[ -z "${1:-}" ] || die "usage: $0 [env]"

is_python312() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; }

if [ ! -x "$LANE_VENV/bin/python" ]; then
  python312="${PYTHON312:-}"
  if [ -z "$python312" ] && command -v pyenv >/dev/null; then
    python312="$(pyenv root)/versions/3.12.1/bin/python"
  fi
  is_python312 "${python312:-}" ||
    die "lane: no Python 3.12 (tried '${python312:-}'): set PYTHON312 to a python3.12 binary"
  log "lane: creating $LANE_VENV with $("$python312" -V)"
  "$python312" -m venv "$LANE_VENV"
fi
is_python312 "$LANE_VENV/bin/python" ||
  die "lane: $LANE_VENV is not Python 3.12: remove it and run again"

stamp="$LANE_VENV/.installed"
want="$(cat "$PROJECT_DIR/setup.py" "$PROJECT_DIR/pyproject.toml" "$OVERRIDES" | sha256sum |
  cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "lane: Python packages current"
else
  log "lane: installing Python packages (pyspark builds from its source archive the first time)"
  "$LANE_VENV/bin/pip" install -q --upgrade pip "setuptools>=68" wheel uv
  # uv's --override replaces the local extra's exact pins, which pip's constraints cannot
  "$LANE_VENV/bin/uv" pip install -q --python "$LANE_VENV/bin/python" \
    -e "$PROJECT_DIR[local,dev,dashboard]" --override "$OVERRIDES"
  echo "$want" >"$stamp"
fi

# jvm/pom.xml's jar set at the lane's Spark and Delta, with Delta's per-Spark artifact
# (delta-spark_4.1_2.13) as a property, and the Hadoop that this pyspark ships (as the pom's is
# Spark 4.0's): 3.4.1's AWS SDK bundle carries a netty older than Spark 4.1's, unshaded
read -r spark_version delta_version pyspark_jars < <("$LANE_VENV/bin/python" -c '
import importlib.metadata as m, os, pyspark
jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
print(m.version("pyspark"), m.version("delta-spark"), jars)')
hadoop_api="$(basename "$(ls "$pyspark_jars"/hadoop-client-api-*.jar)" .jar)"
hadoop_version="${hadoop_api#hadoop-client-api-}"
lane_pom="$STACK_DIR/lane/pom.xml"
mkdir -p "$(dirname "$lane_pom")"
delta_artifact='<artifactId>delta-spark_${scala.binary}</artifactId>'
grep -qF "$delta_artifact" "$JVM_DIR/pom.xml" ||
  die "lane: jvm/pom.xml no longer has $delta_artifact"
sed "s|$delta_artifact|<artifactId>\${delta.artifact}</artifactId>|" "$JVM_DIR/pom.xml" >"$lane_pom"
VENV="$LANE_VENV" JARS_DIR="$LANE_JARS_DIR" JARS_POM="$lane_pom" \
  JARS_MAVEN_ARGS="-Dspark.version=$spark_version -Ddelta.version=$delta_version \
-Ddelta.artifact=delta-spark_${spark_version%.*}_2.13 -Dhadoop.version=$hadoop_version" \
  "$PROJECT_DIR/scripts/jars.sh"
log "lane: done ($("$LANE_VENV/bin/python" -V), pyspark $spark_version," \
  "delta-spark $delta_version, Hadoop $hadoop_version)"
