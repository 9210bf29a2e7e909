# Databricks notebook source
# MAGIC %md
# MAGIC # 3 · Dashboard queries
# MAGIC
# MAGIC The lab's dashboard queries (shipped in the wheel as named SQL files), run against the
# MAGIC rollups and `events`, each with its time. The same as `clickstream-query run --all`.
# MAGIC
# MAGIC **On Databricks**: wheel attached, widget `env = databricks`. **Locally**:
# MAGIC `.venv/bin/python notebooks/3-Dashboard-Queries.py` from the project root.

# COMMAND ----------

from clickstream_pipeline.core.cli import setup_logging
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.core.secrets import resolve_secrets
from clickstream_pipeline.warehouse.database import ConnectionParams, connect
from clickstream_pipeline.warehouse.queries import load_queries, print_queries

dbutils = globals().get("dbutils")  # Databricks defines it; plain Python does not
if dbutils is not None:
    dbutils.widgets.text("env", "databricks")
ENV = dbutils.widgets.get("env") if dbutils is not None else "local"
setup_logging("INFO")

# COMMAND ----------

cfg = load_config(ENV)
secrets = resolve_secrets(cfg.secrets, ["database"])
params = ConnectionParams.from_jdbc_url(secrets["database"])
queries = load_queries()
print(f"env {ENV}: {len(queries)} queries against {params.describe()}")

# COMMAND ----------

conn = connect(params, cfg.database.application_name, cfg.database.connect_timeout_s)
try:
    print_queries(conn, queries.values())
finally:
    conn.close()
