-- name: events_last_15_minutes
-- description: Number of events and distinct devices (HLL estimate, rounded up) over all customers in the last 15 minutes, from rollup_events_5min.
-- source: seeds/003 (MCW Real-time data with Azure Database for PostgreSQL Hyperscale), Exercise 4 Task 2 step 5
SELECT sum(event_count) num_events, ceil(hll_cardinality(hll_union_agg(device_distinct_count))) distinct_devices
FROM rollup_events_5min where minute >=now()-interval '15 minutes' AND minute <=now();
