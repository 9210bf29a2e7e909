-- 0003_events: the raw clickstream table, 5-minute partitions by pg_partman,
-- distributed on customer_id where Citus is installed.
--
-- Columns are the lab's, in the lab's order, with the lab's types and
-- defaults, except:
--   * event_id is bigserial instead of serial (2^31 ids run out at the
--     lab's rates within months); its sequence keeps the lab's name
--     events_event_id_seq, which the rollups bookkeeping refers to;
--   * four ingest columns are appended after the lab's columns. They are
--     nullable or defaulted, so the lab's
--       \COPY events(customer_id,event_type,country,browser,device_id,session_id) FROM ...
--     still works. kafka_* hold the source coordinates of a streamed row
--     (NULL for bulk loads); ingested_at is the load time.
-- Like the lab, no index and no primary key: on a table partitioned by
-- event_time a unique key would have to include event_time.

CREATE TABLE IF NOT EXISTS public.events (
    event_id bigserial,
    event_time timestamptz default now(),
    customer_id bigint,
    event_type text,
    country text,
    browser text,
    device_id bigint,
    session_id bigint,
    -- not in the lab: ingest metadata
    ingested_at timestamptz default now(),
    kafka_topic text,
    kafka_partition int,
    kafka_offset bigint
)
PARTITION BY RANGE (event_time);

COMMENT ON TABLE public.events IS
    'Raw clickstream events (the lab''s events table). Range partitions on event_time managed by pg_partman (5 minutes; daily on Citus); rows outside every partition land in events_default.';
COMMENT ON COLUMN public.events.ingested_at IS 'When the row was written to PostgreSQL (not in the lab).';
COMMENT ON COLUMN public.events.kafka_topic IS 'Kafka topic the row was read from; NULL for bulk loads (not in the lab).';
COMMENT ON COLUMN public.events.kafka_partition IS 'Kafka partition the row was read from; NULL for bulk loads (not in the lab).';
COMMENT ON COLUMN public.events.kafka_offset IS 'Kafka offset of the message; NULL for bulk loads (not in the lab).';

-- Partitions by pg_partman (the lab: create_parent('public.events', 'event_time', 'native',
-- '5 minutes')), sized for the server:
-- * plain PostgreSQL: the lab's 5-minute partitions; premake 288 = one day ahead of now; start
--   one day back, so replayed or late events of the last day have a partition (pg_partman
--   truncates the start to the hour). About 580 partitions at first.
-- * Citus: daily partitions, 3 days ahead and 2 back (the ingest's default max_past_s). Every
--   partition of a distributed table is split into citus.shard_count shards: the lab's
--   5-minute partitions would make 288 x 32 = 9,216 shards a day and 18,848 at bootstrap
--   (64 s on a 3-node cluster), which every DDL, maintenance run and rollup then pays for.
--   Daily partitions keep time pruning and retention by day at 32 shards a day.
-- * pg_partman also creates the default partition events_default: rows that fit no
--   partition land there instead of failing the insert (to monitor).
-- pg_partman 4.x takes p_type 'native'; 5.x takes 'range' and wants the control column NOT
-- NULL (5.2 and later can be told otherwise with p_control_not_null). Where the column must
-- become NOT NULL it does: the ingest always sets event_time, and the lab's \COPY leaves it
-- to the default now().
DO $$
DECLARE
    on_citus boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
    part_interval text := CASE WHEN on_citus THEN '1 day' ELSE '5 minutes' END;
    premake int := CASE WHEN on_citus THEN 3 ELSE 288 END;
    start_partition text := to_char(
        now() - CASE WHEN on_citus THEN interval '2 days' ELSE interval '1 day' END,
        'YYYY-MM-DD HH24:MI:SSOF');
    partman_major int;
BEGIN
    IF EXISTS (SELECT 1 FROM partman.part_config WHERE parent_table = 'public.events') THEN
        RAISE NOTICE 'public.events is already managed by pg_partman: create_parent skipped';
        RETURN;
    END IF;

    SELECT split_part(extversion, '.', 1)::int INTO partman_major
    FROM pg_extension WHERE extname = 'pg_partman';

    IF partman_major < 5 THEN
        EXECUTE format(
            'SELECT partman.create_parent(p_parent_table := %L, p_control := %L, p_type := %L,'
            ' p_interval := %L, p_premake := %s, p_start_partition := %L)',
            'public.events', 'event_time', 'native', part_interval, premake, start_partition);
    ELSIF EXISTS (SELECT 1 FROM pg_proc
                  WHERE oid = 'partman.create_parent'::regproc
                    AND 'p_control_not_null' = ANY (proargnames)) THEN
        EXECUTE format(
            'SELECT partman.create_parent(p_parent_table := %L, p_control := %L, p_interval := %L,'
            ' p_type := %L, p_premake := %s, p_start_partition := %L, p_control_not_null := false)',
            'public.events', 'event_time', part_interval, 'range', premake, start_partition);
    ELSE
        ALTER TABLE public.events ALTER COLUMN event_time SET NOT NULL;
        EXECUTE format(
            'SELECT partman.create_parent(p_parent_table := %L, p_control := %L, p_interval := %L,'
            ' p_type := %L, p_premake := %s, p_start_partition := %L)',
            'public.events', 'event_time', part_interval, 'range', premake, start_partition);
    END IF;
    IF on_citus THEN
        RAISE NOTICE 'events: % partitions of %, premake %, from % (Citus sizes; see the comment in 0003_events.sql)',
            (SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass),
            part_interval, premake, start_partition;
    END IF;
END
$$;

-- The lab: keep creating partitions ahead of now() even when no new rows
-- arrive (pg_partman's default premakes only ahead of the newest row, and
-- after a pause new rows would go to the default partition). retention stays
-- NULL: partitions are kept.
UPDATE partman.part_config
SET infinite_time_partitions = true,
    retention = NULL
WHERE parent_table = 'public.events';

-- Citus only: shard on customer_id (tenant), after pg_partman created the
-- partitions, as the lab does; partitions created later by pg_partman are
-- distributed automatically.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE NOTICE 'citus not installed: events stays a local table';
    ELSIF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'public.events'::regclass) THEN
        RAISE NOTICE 'events is already distributed';
    ELSE
        PERFORM create_distributed_table('public.events', 'customer_id');
    END IF;
END
$$;
