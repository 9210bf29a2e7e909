"""Field and column names, importable without Spark (the producer and loader need no Spark);
the typed schemas built on them are in `schema`."""

# Where the migrations (sql/migrations) create the events table; the offset ledger, the rollups
# and the BI views read it there, so it is not a setting.
EVENTS_SCHEMA = "public"
EVENTS_TABLE = "events"

LAB_FIELDS = ("customer_id", "event_type", "country", "browser", "device_id", "session_id")
ID_FIELDS = ("customer_id", "device_id", "session_id")
TEXT_FIELDS = ("event_type", "country", "browser")

# Columns the ingest job writes into `events` (event_id and ingested_at are the table's defaults).
EVENT_COLUMNS = (
    "event_time",
    "customer_id",
    "event_type",
    "country",
    "browser",
    "device_id",
    "session_id",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "source_event_id",
)
