-- 0010_rollups_single_event_groups: the lab's rollups, same results, a third of the work.
--
-- The lab's rollup key (customer, event_type, country, browser, bucket) has about as many
-- values per bucket as there are events, so many groups hold a single event. For each group
-- hll_add_agg allocates and zeroes a full HLL state (twice: devices and sessions) and
-- topn_add_agg a hash table of topn.number_of_counters entries; profiled on a Citus worker,
-- that allocation was most of the rollup's time. A group of one event now gets its values
-- from scalar functions instead: hll_add(hll_empty(14), hash) and jsonb_build_object(item, 1),
-- which are byte for byte what the aggregates return for one non-NULL value (a test compares
-- them); the aggregates still see every row of larger groups, and every NULL. The window
-- count(*) OVER the same key rides on the sort the grouping needs anyway.
-- Bodies otherwise as in 0005 (the lab's, HLLs with 2^14 registers).

CREATE OR REPLACE FUNCTION five_minutely_aggregation(OUT start_id bigint, OUT end_id bigint)
RETURNS record
LANGUAGE plpgsql
AS $function$
BEGIN
    /* determine which page views we can safely aggregate */
    SELECT window_start, window_end INTO start_id, end_id
    FROM incremental_rollup_window('rollup_events_5min');

    /* exit early if there are no new page views to aggregate */
    IF start_id > end_id THEN RETURN; END IF;

    /* aggregate the page views, merge results if the entry already exists */
    INSERT INTO rollup_events_5min
        SELECT customer_id, event_type, country, browser, minute,
               count(*) AS event_count,
               CASE WHEN count(*) = 1 AND min(device_id) IS NOT NULL
                    THEN hll_add(hll_empty(14), hll_hash_bigint(min(device_id)))
                    ELSE hll_add_agg(hll_hash_bigint(device_id), 14)
                         FILTER (WHERE group_size > 1 OR device_id IS NULL) END
                   AS device_distinct_count,
               CASE WHEN count(*) = 1 AND min(session_id) IS NOT NULL
                    THEN hll_add(hll_empty(14), hll_hash_bigint(min(session_id)))
                    ELSE hll_add_agg(hll_hash_bigint(session_id), 14)
                         FILTER (WHERE group_size > 1 OR session_id IS NULL) END
                   AS session_distinct_count,
               CASE WHEN count(*) = 1 AND min(device_id) IS NOT NULL
                    THEN jsonb_build_object(min(device_id)::text, 1)
                    ELSE topn_add_agg(device_id::text)
                         FILTER (WHERE group_size > 1 OR device_id IS NULL) END
                   AS top_devices_1000
        FROM (SELECT customer_id, event_type, country, browser, device_id, session_id,
                     date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300 + TIMESTAMP 'epoch' AS minute,
                     count(*) OVER (PARTITION BY customer_id, event_type, country, browser,
                         date_trunc('seconds', (event_time - TIMESTAMP 'epoch') / 300) * 300 + TIMESTAMP 'epoch') AS group_size
              FROM events WHERE event_id BETWEEN start_id AND end_id) AS e
        GROUP BY customer_id, event_type, country, browser, minute
        ON CONFLICT (customer_id,event_type,country,browser,minute)
        DO UPDATE
        SET event_count=rollup_events_5min.event_count+excluded.event_count,
            device_distinct_count = hll_union(rollup_events_5min.device_distinct_count, excluded.device_distinct_count),
            session_distinct_count= hll_union(rollup_events_5min.session_distinct_count, excluded.session_distinct_count),
            top_devices_1000 = topn_union(rollup_events_5min.top_devices_1000, excluded.top_devices_1000);
END;
$function$;

CREATE OR REPLACE FUNCTION hourly_aggregation(OUT start_id bigint, OUT end_id bigint)
RETURNS record
LANGUAGE plpgsql
AS $function$
BEGIN
    /* determine which page views we can safely aggregate */
    SELECT window_start, window_end INTO start_id, end_id
    FROM incremental_rollup_window('rollup_events_1hr');

    /* exit early if there are no new page views to aggregate */
    IF start_id > end_id THEN RETURN; END IF;

    /* aggregate the page views, merge results if the entry already exists */
    INSERT INTO rollup_events_1hr
        SELECT customer_id, event_type, country, browser, hour,
               count(*) AS event_count,
               CASE WHEN count(*) = 1 AND min(device_id) IS NOT NULL
                    THEN hll_add(hll_empty(14), hll_hash_bigint(min(device_id)))
                    ELSE hll_add_agg(hll_hash_bigint(device_id), 14)
                         FILTER (WHERE group_size > 1 OR device_id IS NULL) END
                   AS device_distinct_count,
               CASE WHEN count(*) = 1 AND min(session_id) IS NOT NULL
                    THEN hll_add(hll_empty(14), hll_hash_bigint(min(session_id)))
                    ELSE hll_add_agg(hll_hash_bigint(session_id), 14)
                         FILTER (WHERE group_size > 1 OR session_id IS NULL) END
                   AS session_distinct_count,
               CASE WHEN count(*) = 1 AND min(device_id) IS NOT NULL
                    THEN jsonb_build_object(min(device_id)::text, 1)
                    ELSE topn_add_agg(device_id::text)
                         FILTER (WHERE group_size > 1 OR device_id IS NULL) END
                   AS top_devices_1000
        FROM (SELECT customer_id, event_type, country, browser, device_id, session_id,
                     date_trunc('hour', event_time) AS hour,
                     count(*) OVER (PARTITION BY customer_id, event_type, country, browser,
                                    date_trunc('hour', event_time)) AS group_size
              FROM events WHERE event_id BETWEEN start_id AND end_id) AS e
        GROUP BY customer_id, event_type, country, browser, hour
        ON CONFLICT (customer_id,event_type,country,browser,hour)
        DO UPDATE
        SET event_count = rollup_events_1hr.event_count+excluded.event_count,
            device_distinct_count = hll_union(rollup_events_1hr.device_distinct_count,excluded.device_distinct_count),
            session_distinct_count = hll_union(rollup_events_1hr.session_distinct_count,excluded.session_distinct_count),
            top_devices_1000 = topn_union(rollup_events_1hr.top_devices_1000, excluded.top_devices_1000);
END;
$function$;
