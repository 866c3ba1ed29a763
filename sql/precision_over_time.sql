-- Precision over time from analyst feedback: of the alerts analysts reviewed each day,
-- the share they confirmed (latest label per event wins).
WITH latest AS (
  SELECT event_id, label,
         row_number() OVER (PARTITION BY event_id ORDER BY created_at DESC) AS rn
  FROM transactions.feedback
)
SELECT a.event_date,
       count(*) AS reviewed,
       sum(CASE WHEN l.label = 'true_positive' THEN 1 ELSE 0 END) AS confirmed,
       round(avg(CASE WHEN l.label = 'true_positive' THEN 1.0 ELSE 0.0 END), 3) AS precision
FROM transactions.alerts a JOIN latest l ON a.event_id = l.event_id AND l.rn = 1
GROUP BY a.event_date
ORDER BY a.event_date;
