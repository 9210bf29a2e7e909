"""Field and column names, importable without Spark (the producer and loader need no Spark);
the typed schemas built on them are in `schema`. The lab's derive from its event model."""

from clickstream_pipeline.core.model import LAB

# Where the migrations (sql/migrations) create the events table; the offset ledger, the rollups
# and the BI views read it there, so it is not a setting.
EVENTS_SCHEMA = "public"
EVENTS_TABLE = "events"

# The lab's six fields in its producer's and CSV files' order (a format of its own).
LAB_FIELDS = ("customer_id", "event_type", "country", "browser", "device_id", "session_id")
# The lab model's integer and text fields, in the order their rules run.
ID_FIELDS = tuple(n for n in LAB.event_fields if LAB.fields[n].type == "bigint")
TEXT_FIELDS = tuple(n for n in LAB.event_fields if LAB.fields[n].type == "text")

# Columns the ingest job writes into `events` (event_id and ingested_at are the table's defaults).
EVENT_COLUMNS = LAB.event_columns
