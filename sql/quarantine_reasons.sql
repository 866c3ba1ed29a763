-- Quarantine reasons: rejected rows per rule and day (a row failing two rules counts for both).
SELECT event_date, reason, count(*) AS rows_quarantined
FROM transactions.quarantine LATERAL VIEW explode(reasons) r AS reason
GROUP BY event_date, reason
ORDER BY event_date, rows_quarantined DESC, reason;
