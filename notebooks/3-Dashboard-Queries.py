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

from clickstream_pipeline.core.cli import notebook_setting, setup_logging
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.warehouse.database import configured_params, connected
from clickstream_pipeline.warehouse.queries import load_queries, print_queries

dbutils = globals().get("dbutils")  # Databricks defines it; plain Python does not
ENV = notebook_setting(dbutils, "env", "databricks", "local")
setup_logging("INFO")

# COMMAND ----------

cfg = load_config(ENV)
params = configured_params(cfg)
queries = load_queries()
print(f"env {ENV}: {len(queries)} queries against {params.describe()}")

# COMMAND ----------

with connected(cfg, params) as conn:
    print_queries(conn, queries.values())
