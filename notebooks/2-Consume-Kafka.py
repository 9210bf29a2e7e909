# Databricks notebook source
# MAGIC %md
# MAGIC # 2 · Consume Kafka
# MAGIC
# MAGIC The lab's `1-Consume-Kafka`, rebuilt on the `clickstream_pipeline` wheel: read the
# MAGIC clickstream from Kafka (Event Hubs' Kafka endpoint on Azure), validate and enrich each
# MAGIC record, write every micro-batch into `events` exactly once (dead letters to Delta), and
# MAGIC report each batch's progress.
# MAGIC
# MAGIC **On Databricks** (wheel attached, widget `env = databricks`) the query keeps running with
# MAGIC a processing-time trigger until you stop it (last cell); set the widget
# MAGIC `trigger = available_now` for a catch-up run. **Locally**
# MAGIC (`.venv/bin/python notebooks/2-Consume-Kafka.py` from the project root) it reads what is on
# MAGIC the topics now and stops. Override any setting with `CLICKSTREAM__SECTION__KEY`
# MAGIC environment variables, e.g. `CLICKSTREAM__KAFKA__TOPICS='["my-topic"]'`.

# COMMAND ----------

import json

from clickstream_pipeline.core.cli import notebook_setting, setup_logging
from clickstream_pipeline.core.config import load_config
from clickstream_pipeline.ingest.ledger import query_totals
from clickstream_pipeline.ingest.metrics import flush_progress, format_progress
from clickstream_pipeline.ingest.session import open_spark_job
from clickstream_pipeline.ingest.stream import start_ingest
from clickstream_pipeline.warehouse.database import configured_params

dbutils = globals().get("dbutils")  # Databricks defines it; plain Python does not
ENV = notebook_setting(dbutils, "env", "databricks", "local")
TRIGGERS = ("processing_time", "available_now")
TRIGGER = notebook_setting(dbutils, "trigger", "processing_time", "available_now", TRIGGERS)
setup_logging("INFO")

# COMMAND ----------

# MAGIC %md Config, secrets (resolved once), the Spark session (the cluster's on Databricks)
# MAGIC and a listener that logs one line per micro-batch.

# COMMAND ----------

job = open_spark_job(load_config(ENV, [f"ingest.trigger={TRIGGER}"]))
cfg, secrets, spark = job.cfg, job.secrets, job.spark
print(
    f"env {ENV}: topics {cfg.kafka.topics} ({cfg.kafka.security}), query {cfg.ingest.query_name}, "
    f"trigger {cfg.ingest.trigger}, checkpoint {cfg.checkpoint_location}"
)

# COMMAND ----------

# MAGIC %md Start the ingest.

# COMMAND ----------

query = start_ingest(spark, cfg, secrets)
if cfg.ingest.trigger == "available_now":
    query.awaitTermination()
    flush_progress(spark)
    if query.exception() is not None:
        raise RuntimeError(f"query {cfg.ingest.query_name} failed: {query.exception()}")

# COMMAND ----------

# MAGIC %md Progress: Spark's view of the recent batches, and the sink's ledger in PostgreSQL.

# COMMAND ----------

for progress in query.recentProgress:
    print(format_progress(json.loads(progress.json)))

totals = query_totals(configured_params(cfg, secrets), cfg.ingest.query_name)
print(totals.summary(cfg.ingest.query_name))

# COMMAND ----------

# MAGIC %md Stop the query (on Databricks; a local run has stopped already).

# COMMAND ----------

if query.isActive:
    query.stop()
job.close()
if dbutils is None:
    spark.stop()
