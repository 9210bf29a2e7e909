-- 0004_rollup_tables: the lab's 5-minute and 1-hour rollup tables.
--
-- Same columns, types and unique indexes as the lab. The unique indexes are
-- the ON CONFLICT targets of the aggregation functions (0005) and start with
-- customer_id, the distribution column, as Citus requires of unique indexes.
-- On Citus both tables are distributed on customer_id and colocated with
-- events, so the rollup INSERT ... SELECT runs shard-local.

CREATE TABLE IF NOT EXISTS public.rollup_events_5min (
     customer_id bigint,
     event_type text,
     country text,
     browser text,
     minute timestamptz,
     event_count bigint,
     device_distinct_count hll,
     session_distinct_count hll,
     top_devices_1000 jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_events_5min_unique_idx
    ON public.rollup_events_5min(customer_id,event_type,country,browser,minute);

CREATE TABLE IF NOT EXISTS public.rollup_events_1hr (
     customer_id bigint,
     event_type text,
     country text,
     browser text,
     hour timestamptz,
     event_count bigint,
     device_distinct_count hll,
     session_distinct_count hll,
     top_devices_1000 jsonb
);
CREATE UNIQUE INDEX IF NOT EXISTS rollup_events_1hr_unique_idx
    ON public.rollup_events_1hr(customer_id,event_type,country,browser,hour);

COMMENT ON TABLE public.rollup_events_5min IS
    'Events per customer, event_type, country, browser and 5-minute bucket (minute = bucket start), with HLL distinct devices/sessions and TopN device counters; filled by five_minutely_aggregation().';
COMMENT ON TABLE public.rollup_events_1hr IS
    'Events per customer, event_type, country, browser and hour, with HLL distinct devices/sessions and TopN device counters; filled by hourly_aggregation().';

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE NOTICE 'citus not installed: rollup tables stay local';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'public.rollup_events_5min'::regclass) THEN
        PERFORM create_distributed_table('public.rollup_events_5min', 'customer_id', colocate_with => 'public.events');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'public.rollup_events_1hr'::regclass) THEN
        PERFORM create_distributed_table('public.rollup_events_1hr', 'customer_id', colocate_with => 'public.events');
    END IF;
END
$$;
