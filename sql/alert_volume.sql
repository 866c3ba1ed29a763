-- Alert volume by detector and day: events each detector flagged, per event_date.
SELECT event_date, detector, count(*) AS flagged
FROM transactions.scores
WHERE is_anomaly
GROUP BY event_date, detector
ORDER BY event_date, detector;
