#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for this project; safe to run again.
#   1. Debian packages: PostgreSQL 15 with hll, pg_cron, pg_partman; the libraries the Citus
#      bundle links; kcat; Java 17; Maven; Chromium and its driver (the dashboard test)
#   2. .venv with the package (editable) and its local, dev, dashboard and docs extras
#   3. JVM jars for Spark resolved by Maven into .stack/jars (scripts/jars.sh), and the local
#      JVM's class archive (.stack/class-archive, clickstream_pipeline.ingest.warm_up)
source "$(dirname "$0")/stack/common.sh"

APT_PACKAGES=(postgresql-15 postgresql-15-hll postgresql-15-cron postgresql-15-partman kcat
              libcurl4 libpq5 libssl3 libzstd1 liblz4-1
              openjdk-17-jdk-headless maven python3-venv curl chromium chromium-driver
              prometheus)
# ../shared/citus's bundle is built against this PostgreSQL 15 minor (older ones are untested).
CITUS_BUNDLE_PG_MINOR=15.20

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
  log "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log"
  # The Debian package starts a cluster on 5432 that this project does not use.
  if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 main'; then
    pg_ctlcluster 15 main stop 2>/dev/null || true
  fi
else
  log "setup: Debian packages present"
fi
pg_version="$(dpkg-query -W -f='${Version}' postgresql-15)"
if ls "$PROJECT_DIR"/../shared/citus/citus-*.tar.gz >/dev/null 2>&1 &&
   [ ! -f /usr/lib/postgresql/15/lib/citus.so ] &&
   dpkg --compare-versions "$pg_version" lt "$CITUS_BUNDLE_PG_MINOR"; then
  log "setup: upgrading postgresql-15 $pg_version to the current minor (the Citus bundle wants >= $CITUS_BUNDLE_PG_MINOR)"
  [ -n "${missing[*]}" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade postgresql-15 postgresql-client-15 >>"$LOG_DIR/apt.log"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  log "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed"
want="$(cat "$PROJECT_DIR/setup.py" "$PROJECT_DIR/pyproject.toml" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "setup: Python packages current"
else
  log "setup: installing Python packages (pyspark builds from a 435 MB archive the first time: minutes)"
  "$VENV/bin/pip" install -q --upgrade pip "setuptools>=68" wheel
  "$VENV/bin/pip" install -q -e "$PROJECT_DIR[local,dev,dashboard,docs]"
  echo "$want" >"$stamp"
fi

"$PROJECT_DIR/scripts/jars.sh"
"$PROJECT_DIR/scripts/stack/connect.sh" jars  # the peer of benchmarks/peer_connect.py
# local sessions map their classes from an archive trained once here (class_archive.py)
(cd "$PROJECT_DIR" && "$VENV/bin/python" -m clickstream_pipeline.ingest.warm_up --env local)
log "setup: done"
