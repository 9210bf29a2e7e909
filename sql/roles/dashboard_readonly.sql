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
-- It creates nothing in schema public either: on PostgreSQL 14 and older the script takes CREATE
-- there from PUBLIC (PostgreSQL 15's default), keeping it for the owner of the pipeline's tables.
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

-- Every rollup table and its BI view, as the registry lists them (the lab's and the event
-- model's; the bootstrap grants those it generates later itself).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT table_name, view_name FROM public.clickstream_rollup_tables LOOP
        EXECUTE format('GRANT SELECT ON public.%I TO clickstream_dashboard', r.table_name);
        IF to_regclass(format('public.%I', r.view_name)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON public.%I TO clickstream_dashboard', r.view_name);
        END IF;
    END LOOP;
END
$$;

GRANT SELECT ON
    public.clickstream_ingest_batches,
    public.clickstream_ingest_tenant_freshness,
    public.clickstream_tenant_freshness,
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

-- PostgreSQL 14 and older grant CREATE on schema public to PUBLIC, so the role (and every
-- login in it) could create tables, views and functions there, whatever its grants here.
-- Take it from PUBLIC, as PostgreSQL 15 does by default, keeping it for the owner of the
-- pipeline's tables (the migrations create in public). Any other role that creates objects in
-- public needs its own GRANT CREATE ON SCHEMA public. Fails, saying why, when this user may not
-- revoke it (only the schema's owner or a superuser can).
DO $$
DECLARE
    pipeline_owner regrole := (
        SELECT relowner::regrole FROM pg_class WHERE oid = to_regclass('public.events')
    );
BEGIN
    IF has_schema_privilege('clickstream_dashboard', 'public', 'CREATE') THEN
        IF pipeline_owner IS NOT NULL THEN
            EXECUTE format('GRANT CREATE ON SCHEMA public TO %s', pipeline_owner);
        END IF;
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        REVOKE CREATE ON SCHEMA public FROM clickstream_dashboard;
    END IF;
    IF has_schema_privilege('clickstream_dashboard', 'public', 'CREATE') THEN
        RAISE EXCEPTION 'clickstream_dashboard can still create objects in schema public'
            USING HINT = 'As the owner of schema public or a superuser, run REVOKE CREATE ON '
                'SCHEMA public FROM PUBLIC, and check the roles clickstream_dashboard is a '
                'member of.';
    END IF;
END
$$;
