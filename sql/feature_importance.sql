-- Global feature importance per detector, the ensemble first, on the latest scored date:
-- each feature's mean |part of the severity| in points over the detector's explained
-- alerts (a feature outside an alert's top parts counts as 0), its 10 strongest features,
-- with a text bar scaled to the detector's strongest one. The run report draws the same
-- numbers as bars. The ensemble's parts are its members' combined with its weights; the
-- methods of its combined entries (max_z_shapley+tree_shap) are listed one by one.
WITH flagged AS (
  SELECT s.detector, s.explanation
  FROM transactions.scores s
  JOIN (SELECT max(event_date) AS d FROM transactions.scores) latest ON s.event_date = latest.d
  WHERE s.is_anomaly AND size(s.explanation) > 0
),
alerts AS (SELECT detector, count(*) AS alerts FROM flagged GROUP BY detector),
parts AS (
  SELECT f.detector, x.e.feature AS feature, sum(abs(x.e.contribution)) AS total,
         array_join(array_sort(array_distinct(flatten(collect_set(split(x.e.method, '[+]'))))),
                    ', ') AS methods
  FROM flagged f LATERAL VIEW explode(f.explanation) x AS e
  GROUP BY f.detector, x.e.feature
),
ranked AS (
  SELECT p.detector, a.alerts, p.feature, p.total / a.alerts AS mean_abs_part, p.methods,
         max(p.total) OVER (PARTITION BY p.detector) AS top_total,
         p.total,
         row_number() OVER (PARTITION BY p.detector ORDER BY p.total DESC, p.feature) AS rank
  FROM parts p JOIN alerts a ON p.detector = a.detector
)
SELECT detector, alerts, rank, feature, round(mean_abs_part, 2) AS mean_abs_part,
       CASE WHEN top_total > 0 THEN repeat('#', cast(round(20 * total / top_total) AS int))
            ELSE '' END AS bar,
       methods
FROM ranked
WHERE rank <= 10
ORDER BY CASE WHEN detector = 'ensemble' THEN 0 ELSE 1 END, detector, rank;
