-- name: hourly_trend_2_days_customer
-- description: Hourly events, distinct devices and distinct sessions (HLL estimates) of customer 1 since midnight 2 days ago, from rollup_events_1hr (rows in no particular order, as in the lab). The lab hard-codes customer_id=1; the literal is kept so the text is exactly the lab's (a caller may substitute a parameter for it).
-- source: seeds/000 (Data & AI Tech Immersion, Experience 7), Task 6 step 7
SELECT hour,
      sum(event_count) event_count,
      hll_cardinality(hll_union_agg(device_distinct_count)) device_count,
      hll_cardinality(hll_union_agg(session_distinct_count)) session_count
FROM rollup_events_1hr
WHERE hour >=date_trunc('day',now())-interval '2 days'
  AND hour <=now()
  AND customer_id=1
GROUP BY hour;
