-- 0006_cron_jobs: periodic rollups and partition maintenance with pg_cron.
--
-- The lab schedules both aggregations every 5 minutes with unnamed jobs
-- (cron.schedule('*/5 * * * *', ...)), which adds duplicates each time the
-- script runs. Here the jobs are named: cron.schedule(job_name, schedule,
-- command) (pg_cron >= 1.3) replaces an existing job of the same name and
-- user, so this migration can run again without duplicating jobs.
-- pg_partman maintenance runs every minute: with 5-minute partitions and
-- infinite_time_partitions it keeps premaking partitions ahead of now()
-- (p_analyze := false: no ANALYZE of the whole partition set each minute;
-- the call is the same for pg_partman 4.x and 5.x).
-- Skipped with a notice where pg_cron is not installed in this database
-- (0001 installs it only in the database named by cron.database_name).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE NOTICE 'pg_cron is not installed in database %: no jobs scheduled (run five_minutely_aggregation(), hourly_aggregation() and partman.run_maintenance() from elsewhere)',
            current_database();
        RETURN;
    END IF;

    PERFORM cron.schedule('five_minutely_aggregation', '*/5 * * * *', 'SELECT five_minutely_aggregation();');
    PERFORM cron.schedule('hourly_aggregation', '*/5 * * * *', 'SELECT hourly_aggregation();');
    PERFORM cron.schedule('partman_run_maintenance', '* * * * *', 'SELECT partman.run_maintenance(p_analyze := false);');
END
$$;
