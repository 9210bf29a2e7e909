-- name: events_last_15_minutes_customer
-- description: Number of events and distinct devices (HLL estimate, rounded up) of customer 1 in the last 15 minutes, from rollup_events_5min. The lab hard-codes customer_id=1; the literal is kept so the text is exactly the lab's (a caller may substitute a parameter for it).
-- source: seeds/003 (MCW Real-time data with Azure Database for PostgreSQL Hyperscale), Exercise 4 Task 2 step 8
SELECT sum(event_count) num_events, ceil(hll_cardinality(hll_union_agg(device_distinct_count))) distinct_devices
FROM rollup_events_5min where minute >=now()-interval '15 minutes' AND minute <=now() AND customer_id=1;
