-- 0012_rollup_delay: when each micro-batch's events reached the rollups, so freshness per
-- tenant runs from the Kafka timestamp to the rollups the dashboards read, not only to events.
--
-- * clickstream_ingest_batches.events_through_id: the events sequence's last value when the
--   batch was recorded (its rows were committed by then, so their ids are at most this; NULL
--   for a batch that wrote nothing).
-- * clickstream_ingest_batches.rolled_up_at: when every rollup in `rollups` had aggregated
--   past events_through_id, stamped by clickstream_stamp_rolled_up_batches(), which the ingest
--   job's rollup runner calls right after its rollups commit. Where only pg_cron runs the
--   rollups, a job calls it every minute (the stamp is then up to a minute late).
-- * clickstream_tenant_freshness: the tenant rows with both delays; a tenant's delay to the
--   rollups is its slowest record's delay to the commit plus the batch's commit-to-rollup time.

ALTER TABLE public.clickstream_ingest_batches
    ADD COLUMN IF NOT EXISTS events_through_id bigint,
    ADD COLUMN IF NOT EXISTS rolled_up_at timestamptz;

CREATE INDEX IF NOT EXISTS clickstream_ingest_batches_not_rolled_up
    ON public.clickstream_ingest_batches (events_through_id)
    WHERE rolled_up_at IS NULL AND events_through_id IS NOT NULL;

CREATE OR REPLACE FUNCTION public.clickstream_stamp_rolled_up_batches()
RETURNS TABLE (stamped_query text, stamped_batch bigint)
LANGUAGE sql AS $$
    UPDATE public.clickstream_ingest_batches
    SET rolled_up_at = clock_timestamp()
    WHERE rolled_up_at IS NULL
      AND events_through_id <= (SELECT min(last_aggregated_id) FROM public.rollups)
    RETURNING query_name, batch_id
$$;

CREATE OR REPLACE VIEW public.clickstream_tenant_freshness AS
SELECT t.query_name, t.batch_id, t.customer_id, t.customers, t.rows_written,
       t.max_delay_seconds, t.min_delay_seconds, t.committed_at, b.rolled_up_at,
       t.max_delay_seconds + extract(epoch FROM b.rolled_up_at - b.committed_at)::double precision
           AS max_rollup_delay_seconds
FROM public.clickstream_ingest_tenant_freshness t
JOIN public.clickstream_ingest_batches b USING (query_name, batch_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        PERFORM cron.schedule('clickstream_stamp_rolled_up_batches', '* * * * *',
                              'SELECT count(*) FROM clickstream_stamp_rolled_up_batches();');
    END IF;
END
$$;
