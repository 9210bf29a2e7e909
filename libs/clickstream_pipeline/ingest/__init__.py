"""The streaming ingest: Kafka source, parse and validate, the COPY sink with its offset
ledger, dead letters, per-batch metrics, and the smoke path."""
