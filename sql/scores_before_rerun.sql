-- Delta time travel: the ensemble scores of the latest event_date as they were before the
-- last write to the table (e.g. last night's run, before this morning's re-run), next to
-- the current ones, largest change first.
-- ${prev_version} is the table's version before that write: one less than the `version`
-- in the first row of `DESCRIBE HISTORY transactions.scores`; run with
--   beeline -u jdbc:hive2://127.0.0.1:10000/default --hivevar prev_version=N -f sql/scores_before_rerun.sql
WITH latest AS (SELECT max(event_date) AS d FROM transactions.scores),
prev AS (
  SELECT s.event_id, s.severity
  FROM transactions.scores VERSION AS OF ${prev_version} s JOIN latest ON s.event_date = latest.d
  WHERE s.detector = 'ensemble'
),
cur AS (
  SELECT s.event_id, s.severity
  FROM transactions.scores s JOIN latest ON s.event_date = latest.d
  WHERE s.detector = 'ensemble'
)
SELECT coalesce(cur.event_id, prev.event_id) AS event_id,
       prev.severity AS severity_before, cur.severity AS severity_now
FROM prev FULL OUTER JOIN cur ON prev.event_id = cur.event_id
ORDER BY abs(coalesce(cur.severity, 0) - coalesce(prev.severity, 0)) DESC, event_id
LIMIT 50;
