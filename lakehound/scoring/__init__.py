"""The one scoring core: production ensemble -> detector scores -> ensemble severity,
explanation, ``scores`` and ``alerts``; for a Spark DataFrame (batch job, stream) and
for an in-process pandas batch (the real-time endpoint)."""

from lakehound.scoring.core import (
    KEY_COLS,
    BatchScores,
    Member,
    combine_explanations,
    load_members,
    score_pandas,
    score_wide,
    to_alerts,
    to_scores,
    wide_frame,
)

__all__ = [
    "KEY_COLS",
    "BatchScores",
    "Member",
    "combine_explanations",
    "load_members",
    "score_pandas",
    "score_wide",
    "to_alerts",
    "to_scores",
    "wide_frame",
]
