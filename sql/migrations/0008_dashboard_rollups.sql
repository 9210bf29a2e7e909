-- 0008_dashboard_rollups: coarse rollups for the live dashboard, and views for BI tools.
--
-- The lab's rollups are keyed by customer, event_type, country, browser and bucket; with
-- uniform data that is about one row per event, too many to union for all-customer panels
-- or a customer's week. These tables are coarser:
--
--   rollup_customer_totals_5min / _1hr  customer, bucket: events, device and session HLLs,
--                                       TopN device counters (a customer's KPIs, trend, top
--                                       devices and the list of busiest customers)
--   rollup_totals_5min / _1hr           bucket: events, device and session HLLs (all customers)
--   rollup_dimensions_5min / _1hr       bucket, event_type, country, browser: events
--                                       (all-customer breakdowns)
--
-- Bucket columns are named as the lab's: `minute` (start of the 5-minute bucket) and `hour`.
--
-- dashboard_aggregation() fills all six incrementally from the events the lab's
-- incremental_rollup_window() hands out (its own row 'dashboard_rollups' in `rollups`).
-- Each table is derived from those raw events alone, never from another rollup, so the
-- order in which this function and five_minutely_aggregation() / hourly_aggregation() run
-- does not matter and nothing can go stale. Merging is exact: the window gives every event
-- to exactly one run (the rollups row is locked FOR UPDATE until the run commits), counts
-- add up, and hll_union / topn_union of two parts equal the aggregate of the whole (HLL
-- registers are maxima; TopN counters add). Late events merge into their bucket.
--
-- Citus: the customer tables are distributed on customer_id and colocated with events,
-- so their INSERT ... SELECT runs shard-local. The all-customer tables stay local tables
-- on the coordinator: they are small, written only by dashboard_aggregation() (which runs
-- on the coordinator, like pg_cron), read only through the coordinator, and never joined
-- with distributed tables; as reference tables every write (every micro-batch) would pay a
-- two-phase commit to every worker for no gain.

-- Per customer ------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS public.rollup_customer_totals_5min (
    customer_id bigint,
    minute timestamptz,
    event_count bigint,
    device_distinct_count hll,
    session_distinct_count hll,
    top_devices_1000 jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_customer_totals_5min_unique_idx
    ON public.rollup_customer_totals_5min (customer_id, minute);
-- all customers in a time range (the busiest customers)
CREATE INDEX IF NOT EXISTS rollup_customer_totals_5min_minute_idx
    ON public.rollup_customer_totals_5min (minute) INCLUDE (customer_id, event_count);

CREATE TABLE IF NOT EXISTS public.rollup_customer_totals_1hr (
    customer_id bigint,
    hour timestamptz,
    event_count bigint,
    device_distinct_count hll,
    session_distinct_count hll,
    top_devices_1000 jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_customer_totals_1hr_unique_idx
    ON public.rollup_customer_totals_1hr (customer_id, hour);
CREATE INDEX IF NOT EXISTS rollup_customer_totals_1hr_hour_idx
    ON public.rollup_customer_totals_1hr (hour) INCLUDE (customer_id, event_count);

COMMENT ON TABLE public.rollup_customer_totals_5min IS
    'Events per customer and 5-minute bucket (minute = bucket start), with HLL distinct devices/sessions and TopN device counters; filled by dashboard_aggregation().';
COMMENT ON TABLE public.rollup_customer_totals_1hr IS
    'Events per customer and hour, with HLL distinct devices/sessions and TopN device counters; filled by dashboard_aggregation().';

-- All customers -----------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS public.rollup_totals_5min (
    minute timestamptz PRIMARY KEY,
    event_count bigint,
    device_distinct_count hll,
    session_distinct_count hll
);

CREATE TABLE IF NOT EXISTS public.rollup_totals_1hr (
    hour timestamptz PRIMARY KEY,
    event_count bigint,
    device_distinct_count hll,
    session_distinct_count hll
);

CREATE TABLE IF NOT EXISTS public.rollup_dimensions_5min (
    minute timestamptz,
    event_type text,
    country text,
    browser text,
    event_count bigint
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_dimensions_5min_unique_idx
    ON public.rollup_dimensions_5min (minute, event_type, country, browser);

CREATE TABLE IF NOT EXISTS public.rollup_dimensions_1hr (
    hour timestamptz,
    event_type text,
    country text,
    browser text,
    event_count bigint
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_dimensions_1hr_unique_idx
    ON public.rollup_dimensions_1hr (hour, event_type, country, browser);

COMMENT ON TABLE public.rollup_totals_5min IS
    'Events of all customers per 5-minute bucket, with HLL distinct devices/sessions; filled by dashboard_aggregation().';
COMMENT ON TABLE public.rollup_totals_1hr IS
    'Events of all customers per hour, with HLL distinct devices/sessions; filled by dashboard_aggregation().';
COMMENT ON TABLE public.rollup_dimensions_5min IS
    'Events of all customers per 5-minute bucket, event_type, country and browser; filled by dashboard_aggregation().';
COMMENT ON TABLE public.rollup_dimensions_1hr IS
    'Events of all customers per hour, event_type, country and browser; filled by dashboard_aggregation().';

-- The pipeline panel reads recent batches.
CREATE INDEX IF NOT EXISTS clickstream_ingest_batches_committed_at_idx
    ON public.clickstream_ingest_batches (committed_at);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE NOTICE 'citus not installed: dashboard rollup tables stay local';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'public.rollup_customer_totals_5min'::regclass) THEN
        PERFORM create_distributed_table('public.rollup_customer_totals_5min', 'customer_id', colocate_with => 'public.events');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'public.rollup_customer_totals_1hr'::regclass) THEN
        PERFORM create_distributed_table('public.rollup_customer_totals_1hr', 'customer_id', colocate_with => 'public.events');
    END IF;
END
$$;

-- The aggregation ---------------------------------------------------------------------------

INSERT INTO rollups (name, event_table_name, event_id_sequence_name)
VALUES ('dashboard_rollups', 'events', 'events_event_id_seq')
ON CONFLICT (name) DO NOTHING;

CREATE OR REPLACE FUNCTION dashboard_aggregation(OUT start_id bigint, OUT end_id bigint)
RETURNS record
LANGUAGE plpgsql
AS $function$
BEGIN
    -- the next window of committed event ids; the rollups row stays locked until commit
    SELECT window_start, window_end INTO start_id, end_id
    FROM incremental_rollup_window('dashboard_rollups');

    IF start_id > end_id THEN RETURN; END IF;

    INSERT INTO rollup_customer_totals_5min AS t
        SELECT customer_id,
               date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300 + TIMESTAMP 'epoch' AS minute,
               count(*),
               hll_add_agg(hll_hash_bigint(device_id), 14),
               hll_add_agg(hll_hash_bigint(session_id), 14),
               topn_add_agg(device_id::text)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY customer_id, minute
        ON CONFLICT (customer_id, minute) DO UPDATE
        SET event_count = t.event_count + excluded.event_count,
            device_distinct_count = hll_union(t.device_distinct_count, excluded.device_distinct_count),
            session_distinct_count = hll_union(t.session_distinct_count, excluded.session_distinct_count),
            top_devices_1000 = topn_union(t.top_devices_1000, excluded.top_devices_1000);

    INSERT INTO rollup_customer_totals_1hr AS t
        SELECT customer_id,
               date_trunc('hour', event_time) AS hour,
               count(*),
               hll_add_agg(hll_hash_bigint(device_id), 14),
               hll_add_agg(hll_hash_bigint(session_id), 14),
               topn_add_agg(device_id::text)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY customer_id, hour
        ON CONFLICT (customer_id, hour) DO UPDATE
        SET event_count = t.event_count + excluded.event_count,
            device_distinct_count = hll_union(t.device_distinct_count, excluded.device_distinct_count),
            session_distinct_count = hll_union(t.session_distinct_count, excluded.session_distinct_count),
            top_devices_1000 = topn_union(t.top_devices_1000, excluded.top_devices_1000);

    INSERT INTO rollup_totals_5min AS t
        SELECT date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300 + TIMESTAMP 'epoch' AS minute,
               count(*),
               hll_add_agg(hll_hash_bigint(device_id), 14),
               hll_add_agg(hll_hash_bigint(session_id), 14)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY minute
        ON CONFLICT (minute) DO UPDATE
        SET event_count = t.event_count + excluded.event_count,
            device_distinct_count = hll_union(t.device_distinct_count, excluded.device_distinct_count),
            session_distinct_count = hll_union(t.session_distinct_count, excluded.session_distinct_count);

    INSERT INTO rollup_totals_1hr AS t
        SELECT date_trunc('hour', event_time) AS hour,
               count(*),
               hll_add_agg(hll_hash_bigint(device_id), 14),
               hll_add_agg(hll_hash_bigint(session_id), 14)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY hour
        ON CONFLICT (hour) DO UPDATE
        SET event_count = t.event_count + excluded.event_count,
            device_distinct_count = hll_union(t.device_distinct_count, excluded.device_distinct_count),
            session_distinct_count = hll_union(t.session_distinct_count, excluded.session_distinct_count);

    INSERT INTO rollup_dimensions_5min AS t
        SELECT date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300 + TIMESTAMP 'epoch' AS minute,
               event_type, country, browser, count(*)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY minute, event_type, country, browser
        ON CONFLICT (minute, event_type, country, browser) DO UPDATE
        SET event_count = t.event_count + excluded.event_count;

    INSERT INTO rollup_dimensions_1hr AS t
        SELECT date_trunc('hour', event_time) AS hour, event_type, country, browser, count(*)
        FROM events WHERE event_id BETWEEN start_id AND end_id
        GROUP BY hour, event_type, country, browser
        ON CONFLICT (hour, event_type, country, browser) DO UPDATE
        SET event_count = t.event_count + excluded.event_count;
END;
$function$;

COMMENT ON FUNCTION dashboard_aggregation() IS
    'Merges events not yet aggregated into the dashboard rollups (rollup_customer_totals_*, rollup_totals_*, rollup_dimensions_*); returns the event id window it handled.';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE NOTICE 'pg_cron is not installed in database %: dashboard_aggregation() not scheduled (run it from elsewhere)',
            current_database();
        RETURN;
    END IF;
    PERFORM cron.schedule('dashboard_aggregation', '* * * * *', 'SELECT dashboard_aggregation();');
END
$$;

-- Views for BI tools ------------------------------------------------------------------------
-- Distinct counts are HyperLogLog estimates (0.8% standard error) for one row: they do not
-- add up across rows (a device seen in two hours is one device). For totals over several
-- rows use the view at the coarser level (bi_totals_*, bi_customer_*), or hll_union_agg on
-- the underlying table.

CREATE OR REPLACE VIEW public.bi_events_5min AS
SELECT minute AS bucket_start, customer_id, event_type, country, browser,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_events_5min;

CREATE OR REPLACE VIEW public.bi_events_hourly AS
SELECT hour AS bucket_start, customer_id, event_type, country, browser,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_events_1hr;

CREATE OR REPLACE VIEW public.bi_customer_5min AS
SELECT minute AS bucket_start, customer_id,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_customer_totals_5min;

CREATE OR REPLACE VIEW public.bi_customer_hourly AS
SELECT hour AS bucket_start, customer_id,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_customer_totals_1hr;

CREATE OR REPLACE VIEW public.bi_totals_5min AS
SELECT minute AS bucket_start,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_totals_5min;

CREATE OR REPLACE VIEW public.bi_totals_hourly AS
SELECT hour AS bucket_start,
       event_count AS events,
       round(hll_cardinality(device_distinct_count))::bigint AS distinct_devices,
       round(hll_cardinality(session_distinct_count))::bigint AS distinct_sessions
FROM public.rollup_totals_1hr;

CREATE OR REPLACE VIEW public.bi_dimensions_5min AS
SELECT minute AS bucket_start, event_type, country, browser, event_count AS events
FROM public.rollup_dimensions_5min;

CREATE OR REPLACE VIEW public.bi_dimensions_hourly AS
SELECT hour AS bucket_start, event_type, country, browser, event_count AS events
FROM public.rollup_dimensions_1hr;

CREATE OR REPLACE VIEW public.bi_top_devices_hourly AS
SELECT c.hour AS bucket_start, c.customer_id, d.device_rank,
       d.device_id::bigint AS device_id, d.events
FROM public.rollup_customer_totals_1hr c
CROSS JOIN LATERAL topn(c.top_devices_1000, 10) WITH ORDINALITY AS d(device_id, events, device_rank);

CREATE OR REPLACE VIEW public.bi_pipeline_batches AS
SELECT query_name, batch_id, started_at, committed_at, rows_read, rows_written,
       rows_duplicate, rows_dead_lettered, seconds, rows_per_second,
       min_delay_seconds, max_delay_seconds
FROM public.clickstream_ingest_batches;

CREATE OR REPLACE VIEW public.bi_raw_events_last_day AS
SELECT event_time, customer_id, event_type, country, browser, device_id, session_id
FROM public.events
WHERE event_time >= now() - interval '1 day';

COMMENT ON VIEW public.bi_events_5min IS
    'Per 5-minute bucket, customer, event_type, country and browser: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_events_5min.';
COMMENT ON VIEW public.bi_events_hourly IS
    'Per hour, customer, event_type, country and browser: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_events_1hr.';
COMMENT ON VIEW public.bi_customer_5min IS
    'Per 5-minute bucket and customer: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_customer_totals_5min.';
COMMENT ON VIEW public.bi_customer_hourly IS
    'Per hour and customer: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_customer_totals_1hr.';
COMMENT ON VIEW public.bi_totals_5min IS
    'Per 5-minute bucket, all customers: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_totals_5min.';
COMMENT ON VIEW public.bi_totals_hourly IS
    'Per hour, all customers: events, distinct devices and sessions (HLL estimates, not additive across rows). From rollup_totals_1hr.';
COMMENT ON VIEW public.bi_dimensions_5min IS
    'Per 5-minute bucket, event_type, country and browser, all customers: events (additive). From rollup_dimensions_5min.';
COMMENT ON VIEW public.bi_dimensions_hourly IS
    'Per hour, event_type, country and browser, all customers: events (additive). From rollup_dimensions_1hr.';
COMMENT ON VIEW public.bi_top_devices_hourly IS
    'Per hour and customer: the 10 most frequent devices (TopN; device_rank 1 = most events). From rollup_customer_totals_1hr.';
COMMENT ON VIEW public.bi_pipeline_batches IS
    'One row per ingest micro-batch: rows read, written, duplicates skipped, dead-lettered, duration, rows/s, Kafka-to-commit delay. From clickstream_ingest_batches.';
COMMENT ON VIEW public.bi_raw_events_last_day IS
    'READS RAW EVENTS: the events of the last 24 hours, one row per event. Every query scans events partitions; filter on event_time and prefer the rollup views (bi_*) for dashboards.';
