-- name: events_last_week_customer
-- description: Number of events and distinct devices (HLL estimate) of customer 1 since midnight 7 days ago, from rollup_events_1hr. The lab hard-codes customer_id=1; the literal is kept so the text is exactly the lab's (a caller may substitute a parameter for it).
-- source: seeds/000 (Data & AI Tech Immersion, Experience 7), Task 6 step 6
SELECT sum(event_count) num_events,
      hll_cardinality(hll_union_agg(device_distinct_count)) distinct_devices
FROM rollup_events_1hr
WHERE hour >=date_trunc('day',now())-interval '7 days'
  AND hour <=now()
  AND customer_id=1;
