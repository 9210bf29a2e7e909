-- 0001_extensions: the extensions the schema relies on.
--
-- Runs on plain PostgreSQL (hll, pg_partman, optionally pg_cron) and on Citus
-- (citus, topn also present). Every optional extension is guarded so the
-- migration never fails just because an optional piece is missing; the
-- reason for each skip is reported with RAISE NOTICE.
-- Applied in one transaction; safe to re-run (IF NOT EXISTS everywhere).

DO $$
DECLARE
    preload text[] := string_to_array(
        replace(replace(current_setting('shared_preload_libraries', true), ' ', ''), '"', ''), ',');
BEGIN
    -- Citus first: once it is installed, the CREATE EXTENSION statements below
    -- are propagated to the worker nodes.
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        NULL;  -- already there (the usual case on a Citus / Hyperscale cluster)
    ELSIF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'citus') THEN
        RAISE NOTICE 'citus is not available on this server: tables stay local (plain PostgreSQL)';
    ELSIF NOT ('citus' = ANY (coalesce(preload, '{}'))) THEN
        RAISE NOTICE 'citus is available but not in shared_preload_libraries: skipped, tables stay local';
    ELSE
        CREATE EXTENSION IF NOT EXISTS citus;
    END IF;
END
$$;

-- HyperLogLog: required (rollup columns are of type hll).
CREATE EXTENSION IF NOT EXISTS hll;

-- TopN: used when the server has it; otherwise 0002_topn_compat.sql provides
-- SQL functions with the same names.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'topn') THEN
        CREATE EXTENSION IF NOT EXISTS topn;
    ELSE
        RAISE NOTICE 'topn is not available on this server: 0002_topn_compat creates SQL replacements';
    END IF;
END
$$;

-- pg_partman: required, in schema partman (the lab calls partman.create_parent).
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

DO $$
DECLARE
    ext_schema name;
BEGIN
    SELECT n.nspname INTO ext_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';
    IF ext_schema <> 'partman' THEN
        RAISE EXCEPTION 'pg_partman is installed in schema %, expected schema partman', ext_schema
            USING HINT = 'ALTER EXTENSION pg_partman SET SCHEMA partman (or reinstall it there)';
    END IF;
END
$$;

-- pg_cron: only where the library is loaded and this is the database named by
-- cron.database_name (pg_cron refuses to be created anywhere else).
DO $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        NULL;  -- already installed (e.g. by the platform)
    ELSIF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron') THEN
        RAISE NOTICE 'pg_cron is not available on this server: skipped (no scheduled jobs in this database)';
    ELSIF cron_db IS NULL OR cron_db = '' THEN
        RAISE NOTICE 'pg_cron is available but not loaded (not in shared_preload_libraries): skipped';
    ELSIF cron_db <> current_database() THEN
        RAISE NOTICE 'pg_cron skipped: cron.database_name is %, this database is %', cron_db, current_database();
    ELSE
        CREATE EXTENSION IF NOT EXISTS pg_cron;
    END IF;
END
$$;
