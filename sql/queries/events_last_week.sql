-- name: events_last_week
-- description: Number of events and distinct devices (HLL estimate, rounded up) over all customers since midnight 7 days ago, from rollup_events_1hr.
-- source: seeds/003 (MCW Real-time data with Azure Database for PostgreSQL Hyperscale), Exercise 4 Task 2 step 6
SELECT sum(event_count) num_events,
      ceil(hll_cardinality(hll_union_agg(device_distinct_count))) distinct_devices
FROM rollup_events_1hr
WHERE hour >=date_trunc('day',now())-interval '7 days'
  AND hour <=now();
