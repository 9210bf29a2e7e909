-- 0011_tenant_freshness: freshness per tenant (customer), and how far the rollups trail events.
--
-- * clickstream_ingest_tenant_freshness: per micro-batch, the Kafka-timestamp-to-commit delay
--   of the batch's busiest and slowest customers (`ingest.tenant_freshness_top` of each), one
--   row each, and one row (customer_id NULL) for all the others together: bounded however many
--   tenants there are. Written with the batch's row in clickstream_ingest_batches (same
--   transaction; a replayed batch's rows replace it). On Citus a local table on the coordinator,
--   like the batches.
-- * clickstream_rollup_lag: per rollup, the events committed but not yet aggregated (ids the
--   events sequence handed out beyond the rollup's last_aggregated_id; ids of rolled-back
--   inserts count until the next rollup passes them).

CREATE TABLE IF NOT EXISTS public.clickstream_ingest_tenant_freshness (
    query_name text NOT NULL,
    batch_id bigint NOT NULL,
    customer_id bigint,
    customers int NOT NULL,
    rows_written bigint NOT NULL,
    max_delay_seconds double precision NOT NULL,
    min_delay_seconds double precision NOT NULL,
    committed_at timestamptz NOT NULL,
    CHECK (customers >= 1 AND (customer_id IS NULL OR customers = 1))
);
COMMENT ON COLUMN public.clickstream_ingest_tenant_freshness.customer_id IS
    'NULL: every other customer of the batch, together (customers says how many).';
CREATE UNIQUE INDEX IF NOT EXISTS clickstream_ingest_tenant_freshness_key
    ON public.clickstream_ingest_tenant_freshness (query_name, batch_id, coalesce(customer_id, -1));
CREATE INDEX IF NOT EXISTS clickstream_ingest_tenant_freshness_time
    ON public.clickstream_ingest_tenant_freshness (committed_at);

-- the dashboard's freshness trend reads the batches of a time range
CREATE INDEX IF NOT EXISTS clickstream_ingest_batches_committed
    ON public.clickstream_ingest_batches (committed_at);

CREATE OR REPLACE VIEW public.clickstream_rollup_lag AS
SELECT name AS rollup,
       greatest(coalesce(pg_sequence_last_value(event_id_sequence_name::regclass), 0)
                - last_aggregated_id, 0) AS events_behind
FROM public.rollups;
