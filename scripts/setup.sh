#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) for this project; safe to run again.
#   1. Debian packages: PostgreSQL 15 with hll, pg_cron, pg_partman; kcat; Java 17; Maven;
#      Chromium and its driver (the dashboard test)
#   2. .venv with the package (editable) and its local, dev and dashboard extras
#   3. JVM jars for Spark resolved by Maven into .stack/jars (scripts/jars.sh)
source "$(dirname "$0")/stack/common.sh"

APT_PACKAGES=(postgresql-15 postgresql-15-hll postgresql-15-cron postgresql-15-partman kcat
              openjdk-17-jdk-headless maven python3-venv curl chromium chromium-driver)

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
  "$VENV/bin/pip" install -q -e "$PROJECT_DIR[local,dev,dashboard]"
  echo "$want" >"$stamp"
fi

"$PROJECT_DIR/scripts/jars.sh"
log "setup: done"
