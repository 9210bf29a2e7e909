-- dashboard_readonly: a read-only group role for the dashboard and BI tools.
--
-- Run once per database, after clickstream-bootstrap, as the owner of the pipeline's tables:
--   psql "host=... dbname=citus user=citus" -v ON_ERROR_STOP=1 -f sql/roles/dashboard_readonly.sql
-- (the file is also in the wheel: clickstream_pipeline/sql/roles/dashboard_readonly.sql).
-- Then give each person or tool a login in the role, setting its password without echoing it:
--   CREATE ROLE dashboard_user LOGIN IN ROLE clickstream_dashboard;
--   \password dashboard_user
-- and point the dashboard's Database-Connection-String secret (or the BI tool) at that user.
--
-- The role can read the rollups, the BI views, the ingest batches and per-tenant freshness,
-- nothing else: no raw events (except through bi_raw_events_last_day, granted below; revoke
-- it to forbid raw reads), no ledger, no writes. Its sessions default to read-only transactions.
-- Safe to run again. On Citus, run it on the coordinator (roles and grants propagate).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clickstream_dashboard') THEN
        CREATE ROLE clickstream_dashboard NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO clickstream_dashboard', current_database());
END
$$;

-- Members inherit the grants; read-only applies to sessions of the role itself (SET ROLE),
-- the dashboard also opens its own sessions read-only.
ALTER ROLE clickstream_dashboard SET default_transaction_read_only = on;

GRANT USAGE ON SCHEMA public TO clickstream_dashboard;

GRANT SELECT ON
    public.rollup_events_5min,
    public.rollup_events_1hr,
    public.rollup_customer_totals_5min,
    public.rollup_customer_totals_1hr,
    public.rollup_totals_5min,
    public.rollup_totals_1hr,
    public.rollup_dimensions_5min,
    public.rollup_dimensions_1hr,
    public.clickstream_ingest_batches,
    public.clickstream_ingest_tenant_freshness,
    public.clickstream_tenant_freshness,
    public.bi_events_5min,
    public.bi_events_hourly,
    public.bi_customer_5min,
    public.bi_customer_hourly,
    public.bi_totals_5min,
    public.bi_totals_hourly,
    public.bi_dimensions_5min,
    public.bi_dimensions_hourly,
    public.bi_top_devices_hourly,
    public.bi_pipeline_batches,
    public.bi_raw_events_last_day
TO clickstream_dashboard;

-- On Citus bi_raw_events_last_day reads through a function (migration 0009); the view's
-- readers need EXECUTE on it. Revoking it forbids raw reads there.
DO $$
BEGIN
    IF to_regprocedure('public.bi_raw_events_last_day_rows()') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION public.bi_raw_events_last_day_rows() TO clickstream_dashboard;
    END IF;
END
$$;
