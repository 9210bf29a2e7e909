-- 0009_citus_raw_events_view: bi_raw_events_last_day readable by the read-only role on Citus.
--
-- On plain PostgreSQL a view reads its tables with its owner's privileges, so the read-only
-- role (sql/roles/dashboard_readonly.sql) reads the last day of raw events through this view
-- without any grant on events. Citus plans a query on a view over a distributed table into
-- queries on the shards and runs them on the workers as the session's user, who has no
-- privilege on the shards ("permission denied for table events_102008"). On Citus the view
-- therefore reads through a SECURITY DEFINER function owned by the migrating role, whose
-- shard queries run as that owner; EXECUTE on it is the read-only role's only way in.
-- Nothing changes on plain PostgreSQL.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE NOTICE 'citus not installed: bi_raw_events_last_day stays a plain view';
        RETURN;
    END IF;

    CREATE OR REPLACE FUNCTION public.bi_raw_events_last_day_rows()
    RETURNS TABLE (event_time timestamptz, customer_id bigint, event_type text, country text,
                   browser text, device_id bigint, session_id bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $fn$
        SELECT event_time, customer_id, event_type, country, browser, device_id, session_id
        FROM public.events
        WHERE event_time >= now() - interval '1 day'
    $fn$;
    REVOKE ALL ON FUNCTION public.bi_raw_events_last_day_rows() FROM PUBLIC;
    COMMENT ON FUNCTION public.bi_raw_events_last_day_rows() IS
        'The rows of bi_raw_events_last_day, read as the function''s owner (Citus runs shard queries as the calling user).';

    CREATE OR REPLACE VIEW public.bi_raw_events_last_day AS
    SELECT * FROM public.bi_raw_events_last_day_rows();

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clickstream_dashboard') THEN
        GRANT EXECUTE ON FUNCTION public.bi_raw_events_last_day_rows() TO clickstream_dashboard;
    END IF;
END
$$;
