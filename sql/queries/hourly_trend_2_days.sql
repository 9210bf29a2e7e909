-- name: hourly_trend_2_days
-- description: Hourly events, distinct devices and distinct sessions (HLL estimates, rounded up) over all customers since midnight 2 days ago, from rollup_events_1hr (rows in no particular order, as in the lab).
-- source: seeds/003 (MCW Real-time data with Azure Database for PostgreSQL Hyperscale), Exercise 4 Task 2 step 7
SELECT hour,
      sum(event_count) event_count,
      ceil(hll_cardinality(hll_union_agg(device_distinct_count))) device_count,
      ceil(hll_cardinality(hll_union_agg(session_distinct_count))) session_count
FROM rollup_events_1hr
WHERE hour >=date_trunc('day',now())-interval '2 days'
  AND hour <=now()
GROUP BY hour;
