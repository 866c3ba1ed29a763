-- Today's top anomalies with their explanations (latest event_date in alerts).
-- top_parts: each feature's part of the severity in points and its attribution method.
SELECT a.event_id, a.entity_id, a.event_ts, round(a.severity, 2) AS severity, a.detectors,
       transform(slice(a.explanation, 1, 3),
                 e -> concat(e.feature, '=', format_number(e.value, 3))) AS top_features,
       transform(slice(a.explanation, 1, 3),
                 e -> concat(e.feature, ' ', format_number(e.contribution, 2), ' pts (',
                             coalesce(e.method, '?'), ')')) AS top_parts
FROM transactions.alerts a
JOIN (SELECT max(event_date) AS d FROM transactions.alerts) latest ON a.event_date = latest.d
ORDER BY a.severity DESC, a.event_id
LIMIT 20;
