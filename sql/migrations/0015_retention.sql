-- 0015_retention: how long each table keeps its rows, and the function pg_cron runs hourly
-- to enforce it. The bootstrap writes the event model's [retention] into keep; a NULL keep
-- keeps every row (what every table did before this migration).
--   * events: whole partitions, by pg_partman's own retention (partman.part_config.retention,
--     which the bootstrap sets beside this row; run_maintenance, every minute, drops them);
--   * rollups: rows whose bucket (time_column) is older than keep are deleted;
--   * bookkeeping: rows older than keep are deleted, except that the ledger and the batch
--     records keep the newest keep_batches batches of each stream (stream_column) whatever
--     their age: Spark's checkpoint keeps that many batches (minBatchesToRetain, 100) and
--     can replay none older, so every replay it can produce still finds its ledger entries.
CREATE TABLE IF NOT EXISTS public.clickstream_retention (
    table_name text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('events', 'rollup', 'bookkeeping')),
    time_column text NOT NULL,
    stream_column text,
    keep interval,
    keep_batches int CHECK (keep_batches > 0),
    last_run_at timestamptz,
    last_removed bigint
);
COMMENT ON TABLE public.clickstream_retention IS
    'How long each table keeps its rows (keep NULL: all), set by the bootstrap from the event model''s [retention]; enforced hourly by clickstream_apply_retention() (events: by pg_partman).';

INSERT INTO public.clickstream_retention (table_name, kind, time_column, stream_column, keep_batches)
VALUES
    ('events', 'events', 'event_time', NULL, NULL),
    ('rollup_events_5min', 'rollup', 'minute', NULL, NULL),
    ('rollup_events_1hr', 'rollup', 'hour', NULL, NULL),
    ('rollup_customer_totals_5min', 'rollup', 'minute', NULL, NULL),
    ('rollup_customer_totals_1hr', 'rollup', 'hour', NULL, NULL),
    ('rollup_totals_5min', 'rollup', 'minute', NULL, NULL),
    ('rollup_totals_1hr', 'rollup', 'hour', NULL, NULL),
    ('rollup_dimensions_5min', 'rollup', 'minute', NULL, NULL),
    ('rollup_dimensions_1hr', 'rollup', 'hour', NULL, NULL),
    ('clickstream_ingest_ledger', 'bookkeeping', 'committed_at', 'sink', 100),
    ('clickstream_ingest_batches', 'bookkeeping', 'committed_at', 'query_name', 100),
    ('clickstream_ingest_tenant_freshness', 'bookkeeping', 'committed_at', NULL, NULL)
ON CONFLICT (table_name) DO NOTHING;

-- Deletes what each table keeps no longer (events excepted: pg_partman drops its partitions)
-- and returns how many rows left each table. Identifiers come from the table above, quoted.
CREATE OR REPLACE FUNCTION public.clickstream_apply_retention()
RETURNS TABLE (retained_table text, rows_removed bigint)
LANGUAGE plpgsql
AS $function$
DECLARE
    r record;
    removed bigint;
BEGIN
    FOR r IN
        SELECT c.table_name, c.kind, c.time_column, c.stream_column, c.keep, c.keep_batches
        FROM public.clickstream_retention c
        WHERE c.keep IS NOT NULL AND c.kind <> 'events'
        ORDER BY c.table_name
    LOOP
        IF r.stream_column IS NOT NULL AND r.keep_batches IS NOT NULL THEN
            EXECUTE format(
                'WITH newest AS (SELECT %3$I AS stream, max(batch_id) AS batch_id'
                ' FROM public.%1$I GROUP BY %3$I)'
                ' DELETE FROM public.%1$I t USING newest'
                ' WHERE t.%3$I = newest.stream AND t.%2$I < now() - $1'
                ' AND t.batch_id <= newest.batch_id - $2',
                r.table_name, r.time_column, r.stream_column)
            USING r.keep, r.keep_batches;
        ELSE
            EXECUTE format('DELETE FROM public.%I WHERE %I < now() - $1',
                           r.table_name, r.time_column)
            USING r.keep;
        END IF;
        GET DIAGNOSTICS removed = ROW_COUNT;
        UPDATE public.clickstream_retention c
        SET last_run_at = now(), last_removed = removed
        WHERE c.table_name = r.table_name;
        retained_table := r.table_name;
        rows_removed := removed;
        RETURN NEXT;
    END LOOP;
END;
$function$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE NOTICE 'pg_cron is not installed in database %: retention not scheduled (run clickstream_apply_retention() hourly from elsewhere)',
            current_database();
        RETURN;
    END IF;
    PERFORM cron.schedule('clickstream_retention', '7 * * * *',
                          'SELECT count(*) FROM public.clickstream_apply_retention();');
END
$$;
