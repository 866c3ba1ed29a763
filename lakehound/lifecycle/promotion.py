"""The promotion rule: a candidate replaces production only if it is better on PR-AUC."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate_pr_auc: float
    production_pr_auc: float


def decide(candidate_pr_auc: float, production_pr_auc: float | None, min_gain: float) -> Decision:
    """Promote when the candidate's PR-AUC beats production's by more than ``min_gain``.

    Both numbers must come from the same evaluation window. With no production
    model the candidate is promoted; with no usable candidate number it is not.
    """
    prod = float("nan") if production_pr_auc is None else production_pr_auc
    if math.isnan(candidate_pr_auc):
        return Decision(
            False, "candidate PR-AUC undefined (no labelled anomaly)", candidate_pr_auc, prod
        )
    if production_pr_auc is None or math.isnan(prod):
        return Decision(True, "no production model to compare with", candidate_pr_auc, prod)
    if candidate_pr_auc > prod + min_gain:
        return Decision(
            True, f"PR-AUC {candidate_pr_auc:.4f} > {prod:.4f} + {min_gain}", candidate_pr_auc, prod
        )
    return Decision(
        False, f"PR-AUC {candidate_pr_auc:.4f} <= {prod:.4f} + {min_gain}", candidate_pr_auc, prod
    )
