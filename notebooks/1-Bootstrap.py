# Databricks notebook source
# MAGIC %md
# MAGIC # 1 · Bootstrap the database
# MAGIC
# MAGIC Creates or upgrades the PostgreSQL/Citus schema with the wheel's migrations (events,
# MAGIC rollups, TopN functions, pg_cron schedules), exactly what the `clickstream-bootstrap`
# MAGIC job does. Run it once per database; a second run changes nothing.
# MAGIC
# MAGIC **On Databricks** attach the `clickstream_pipeline` wheel to the cluster (the bundle's
# MAGIC jobs do; `databricks bundle deploy` uploads it) and keep the widget `env = databricks`:
# MAGIC secrets come from the Key Vault-backed scope `key-vault-secrets`.
# MAGIC **Locally** run `.venv/bin/python notebooks/1-Bootstrap.py` from the project root:
# MAGIC `dbutils` is absent, so config is `conf/local.toml` and secrets come from
# MAGIC `.stack/secrets.env`.

# COMMAND ----------

from clickstream_pipeline.core.cli import notebook_setting, setup_logging
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.secrets import resolve_secrets
from clickstream_pipeline.warehouse.database import configured_params, connected, server_facts
from clickstream_pipeline.warehouse.migrations import load_migrations, migrate, report_lines

dbutils = globals().get("dbutils")  # Databricks defines it; plain Python does not
ENV = notebook_setting(dbutils, "env", "databricks", "local")
setup_logging("INFO")

# COMMAND ----------

cfg = load_config(ENV)
secrets = resolve_secrets(cfg.secrets, ["database"])
params = configured_params(cfg, secrets)
print(f"env {ENV}: database {params.describe()}, secrets from {secrets.backend}")

# COMMAND ----------

with connected(cfg, params) as conn:
    print(f"server: {server_facts(conn)}")
    report = migrate(conn, load_migrations(), cfg.database.citus_shard_count)
    print("\n".join(report_lines(report, conn)))
