-- name: events_last_5_minutes_customer
-- description: Number of events and distinct devices (HLL estimate) of customer 1 in the last 5 minutes, from rollup_events_5min. The lab hard-codes customer_id=1; the literal is kept so the text is exactly the lab's (a caller may substitute a parameter for it).
-- source: seeds/000 (Data & AI Tech Immersion, Experience 7), Task 6 step 5
SELECT sum(event_count) num_events, hll_cardinality(hll_union_agg(device_distinct_count)) distinct_devices
FROM rollup_events_5min where minute >=now()-interval '5 minutes' AND minute <=now() AND customer_id=1;
