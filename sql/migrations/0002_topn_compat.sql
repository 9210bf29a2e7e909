-- 0002_topn_compat: TopN-compatible functions where the TopN extension is absent.
--
-- The lab's rollups and dashboard queries call topn_add_agg(text),
-- topn_union(jsonb, jsonb), topn_union_agg(jsonb) and topn(jsonb, int) from
-- the Citus TopN extension (https://github.com/citusdata/postgresql-topn).
-- Where that extension is installed (0001 installs it when available) this
-- migration does nothing. Elsewhere it creates SQL/PL/pgSQL functions with
-- the same names, arguments and results so the lab's SQL runs unchanged:
--
--   * counters are a jsonb object {"item": frequency, ...}, as TopN's;
--   * results are truncated to the top topn.number_of_counters entries
--     (default 1000, TopN's default; SET topn.number_of_counters works too);
--   * NULL items are ignored; an aggregate over no rows returns '{}'.
--
-- Differences from TopN (all on the safe side for heavy hitters):
--   * topn_add_agg / topn_union_agg collect their input in an array (the
--     built-in array_append works in place on the aggregate state, so
--     accumulation is O(1) per row) and count exactly once at the end, then
--     keep the top N. TopN instead prunes a hash table to N whenever it
--     exceeds 3*N entries, i.e. uses bounded memory but may under-count.
--     Here memory grows with the rows of one group (one rollup batch).
--   * ties in frequency are broken by item (text order); TopN's order of ties
--     is unspecified.
--   * the (jsonb, text, int) / (jsonb, jsonb, int) variants and the jsonb
--     "+" operator of TopN are not provided (the lab does not use them).
--
-- If the TopN extension is installed later, drop these functions first
-- (DROP AGGREGATE topn_add_agg(text), topn_union_agg(jsonb); DROP FUNCTION
-- topn_add(jsonb, text), topn_union(jsonb, jsonb), topn(jsonb, integer),
-- topn_compat_*), otherwise CREATE EXTENSION topn fails on the name clash.
--
-- On Citus (11+), functions and aggregates created on the coordinator are
-- propagated to the workers (citus.create_object_propagation), so the
-- shard-local rollup queries find them there.

DO $do$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'topn') THEN
        RAISE NOTICE 'topn extension installed: TopN-compatible SQL functions not needed, skipped';
        RETURN;
    END IF;

    -- Number of counters kept, as TopN's GUC topn.number_of_counters (default 1000).
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_compat_number_of_counters()
    RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$
        SELECT coalesce(nullif(current_setting('topn.number_of_counters', true), '')::integer, 1000)
    $fn$
    $ddl$;

    -- Keep the top n counters of a jsonb counter object.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_compat_truncate(counters jsonb, n integer)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$
        SELECT CASE
            WHEN counters IS NULL THEN NULL
            WHEN (SELECT count(*) FROM jsonb_object_keys(counters)) <= n THEN counters
            ELSE (SELECT coalesce(jsonb_object_agg(t.key, t.frequency), '{}'::jsonb)
                  FROM (SELECT e.key, e.value::bigint AS frequency
                        FROM jsonb_each_text(counters) AS e
                        ORDER BY e.value::bigint DESC, e.key
                        LIMIT n) AS t)
        END
    $fn$
    $ddl$;

    -- topn_add(counters, item): counters with item's frequency incremented.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_add(counters jsonb, item text)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $fn$
    DECLARE
        old_frequency bigint;
    BEGIN
        IF item IS NULL THEN
            RETURN coalesce(counters, '{}'::jsonb);
        END IF;
        old_frequency := (counters ->> item)::bigint;
        IF old_frequency IS NOT NULL THEN
            RETURN counters || jsonb_build_object(item, old_frequency + 1);
        END IF;
        RETURN topn_compat_truncate(coalesce(counters, '{}'::jsonb) || jsonb_build_object(item, 1),
                                    topn_compat_number_of_counters());
    END
    $fn$
    $ddl$;

    -- topn_union(a, b): frequencies of both counter objects added, top N kept.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_union(counters1 jsonb, counters2 jsonb)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $fn$
    BEGIN
        IF counters1 IS NULL OR counters1 = '{}'::jsonb THEN
            RETURN coalesce(counters2, counters1);
        ELSIF counters2 IS NULL OR counters2 = '{}'::jsonb THEN
            RETURN counters1;
        END IF;
        RETURN (
            SELECT coalesce(jsonb_object_agg(t.key, t.frequency), '{}'::jsonb)
            FROM (SELECT e.key, sum(e.value::bigint) AS frequency
                  FROM (SELECT * FROM jsonb_each_text(counters1)
                        UNION ALL
                        SELECT * FROM jsonb_each_text(counters2)) AS e
                  GROUP BY e.key
                  ORDER BY 2 DESC, 1
                  LIMIT topn_compat_number_of_counters()) AS t);
    END
    $fn$
    $ddl$;

    -- Final function of topn_add_agg: count the collected items, keep the top N.
    -- Rollup groups often hold a single row: that case skips the query.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_compat_add_final(items text[])
    RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $fn$
    DECLARE
        n integer := cardinality(items);
    BEGIN
        IF n IS NULL OR n = 0 THEN
            RETURN '{}'::jsonb;
        ELSIF n = 1 THEN
            IF items[1] IS NULL THEN
                RETURN '{}'::jsonb;
            END IF;
            RETURN jsonb_build_object(items[1], 1);
        END IF;
        RETURN (
            SELECT coalesce(jsonb_object_agg(t.item, t.frequency), '{}'::jsonb)
            FROM (SELECT u.item, count(*) AS frequency
                  FROM unnest(items) AS u(item)
                  WHERE u.item IS NOT NULL
                  GROUP BY u.item
                  ORDER BY 2 DESC, 1
                  LIMIT topn_compat_number_of_counters()) AS t);
    END
    $fn$
    $ddl$;

    -- Final function of topn_union_agg: add up all collected counter objects.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn_compat_union_final(counters jsonb[])
    RETURNS jsonb
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $fn$
    DECLARE
        n integer := cardinality(counters);
    BEGIN
        IF n IS NULL OR n = 0 THEN
            RETURN '{}'::jsonb;
        ELSIF n = 1 THEN
            RETURN coalesce(topn_compat_truncate(counters[1], topn_compat_number_of_counters()), '{}'::jsonb);
        END IF;
        RETURN (
            SELECT coalesce(jsonb_object_agg(t.key, t.frequency), '{}'::jsonb)
            FROM (SELECT e.key, sum(e.value::bigint) AS frequency
                  FROM unnest(counters) AS c(j), jsonb_each_text(c.j) AS e
                  GROUP BY e.key
                  ORDER BY 2 DESC, 1
                  LIMIT topn_compat_number_of_counters()) AS t);
    END
    $fn$
    $ddl$;

    -- Aggregates. array_append (built in) appends in place to the aggregate's
    -- expanded-array state; array_cat combines partial states (parallel query,
    -- Citus multi-shard aggregation). NULL inputs are appended and skipped at
    -- the end.
    EXECUTE $ddl$
    CREATE OR REPLACE AGGREGATE topn_add_agg(text) (
        SFUNC = array_append,
        STYPE = text[],
        FINALFUNC = topn_compat_add_final,
        COMBINEFUNC = array_cat,
        PARALLEL = SAFE
    )
    $ddl$;

    EXECUTE $ddl$
    CREATE OR REPLACE AGGREGATE topn_union_agg(jsonb) (
        SFUNC = array_append,
        STYPE = jsonb[],
        FINALFUNC = topn_compat_union_final,
        COMBINEFUNC = array_cat,
        PARALLEL = SAFE
    )
    $ddl$;

    -- topn(counters, n): the n most frequent items, most frequent first.
    EXECUTE $ddl$
    CREATE OR REPLACE FUNCTION topn(counters jsonb, n integer)
    RETURNS TABLE (item text, frequency bigint)
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    AS $fn$
    BEGIN
        IF n > topn_compat_number_of_counters() THEN
            RAISE EXCEPTION 'desired number of counters is higher than the topn.number_of_counters variable';
        END IF;
        RETURN QUERY
            SELECT e.key, e.value::bigint
            FROM jsonb_each_text(counters) AS e
            ORDER BY 2 DESC, 1
            LIMIT greatest(n, 0);
    END
    $fn$
    $ddl$;

    EXECUTE $ddl$ COMMENT ON FUNCTION topn(jsonb, integer) IS
        'TopN-compatible fallback (sql/migrations/0002_topn_compat.sql): top n items of a counter object' $ddl$;
    EXECUTE $ddl$ COMMENT ON FUNCTION topn_add(jsonb, text) IS
        'TopN-compatible fallback (sql/migrations/0002_topn_compat.sql): add one item to a counter object' $ddl$;
    EXECUTE $ddl$ COMMENT ON FUNCTION topn_union(jsonb, jsonb) IS
        'TopN-compatible fallback (sql/migrations/0002_topn_compat.sql): union of two counter objects' $ddl$;
    EXECUTE $ddl$ COMMENT ON AGGREGATE topn_add_agg(text) IS
        'TopN-compatible fallback (sql/migrations/0002_topn_compat.sql): aggregate items into one counter object' $ddl$;
    EXECUTE $ddl$ COMMENT ON AGGREGATE topn_union_agg(jsonb) IS
        'TopN-compatible fallback (sql/migrations/0002_topn_compat.sql): aggregate counter objects into one' $ddl$;
END
$do$;
