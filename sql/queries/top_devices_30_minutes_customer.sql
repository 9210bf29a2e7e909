-- name: top_devices_30_minutes_customer
-- description: The 10 most frequent device ids of customer 2 (TopN), from rollup_events_5min. As written in the lab the window starts 30 minutes before today's midnight (date_trunc('day', now()) - 30 minutes), not 30 minutes ago; kept as written. The lab hard-codes customer_id=2; the literal is kept so the text is exactly the lab's (a caller may substitute a parameter for it).
-- source: seeds/000 (Data & AI Tech Immersion, Experience 7), Task 6 step 8; identical in seeds/003, Exercise 4 Task 2 step 9
SELECT (topn(topn_union_agg(top_devices_1000), 10)).item device_id
FROM rollup_events_5min
WHERE minute >=date_trunc('day',now())-interval '30 minutes'
  AND minute <=now()
  AND customer_id=2;
