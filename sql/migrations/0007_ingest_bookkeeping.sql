-- 0007_ingest_bookkeeping: what the streaming ingest job needs beside events.
--
-- * events.source_event_id: the producer's optional event_id. events.event_id stays the
--   table's own sequence, which the incremental rollups track.
-- * clickstream_ingest_ledger: the Kafka offset ranges each sink has written. A range is
--   inserted in the same transaction as its rows (COPY), so a replayed micro-batch finds its
--   ranges and skips those rows: exactly once, across restarts and even a reset checkpoint.
--   On Citus it stays a local table on the coordinator, where the sink's transactions
--   start; Citus commits the COPY into the distributed events shards and this insert in one
--   transaction (two-phase commit across the nodes it touched).
-- * clickstream_ingest_batches: one row per micro-batch (counts, offsets, timings) for
--   monitoring and the dashboard's pipeline panel.
-- * a BRIN index on events.event_id: the incremental rollups select
--   `event_id BETWEEN start AND end`; ids grow with insertion order, so a BRIN index finds the
--   new rows without scanning every partition (tiny, and cheap to keep up on ingest).

CREATE INDEX IF NOT EXISTS events_event_id_brin ON public.events USING brin (event_id);

ALTER TABLE public.events ADD COLUMN IF NOT EXISTS source_event_id bigint;
COMMENT ON COLUMN public.events.source_event_id IS
    'The producer''s event_id, when the message had one (not in the lab).';

CREATE TABLE IF NOT EXISTS public.clickstream_ingest_ledger (
    sink text NOT NULL,
    kafka_topic text NOT NULL,
    kafka_partition int NOT NULL,
    start_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    batch_id bigint NOT NULL,
    row_count bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, kafka_topic, kafka_partition, start_offset),
    CHECK (end_offset >= start_offset)
);
CREATE INDEX IF NOT EXISTS clickstream_ingest_ledger_end
    ON public.clickstream_ingest_ledger (sink, kafka_topic, kafka_partition, end_offset);

CREATE TABLE IF NOT EXISTS public.clickstream_ingest_batches (
    query_name text NOT NULL,
    batch_id bigint NOT NULL,
    rows_read bigint NOT NULL,
    rows_written bigint NOT NULL,
    rows_duplicate bigint NOT NULL,
    rows_dead_lettered bigint NOT NULL,
    offsets jsonb NOT NULL,
    started_at timestamptz NOT NULL,
    committed_at timestamptz NOT NULL,
    seconds double precision NOT NULL,
    rows_per_second double precision NOT NULL,
    max_delay_seconds double precision,
    min_delay_seconds double precision,
    PRIMARY KEY (query_name, batch_id)
);
