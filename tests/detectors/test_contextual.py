"""CAD OSE (udfs.detectors.contextual): the vectorised port against NAB's original loops.

``_RefContextOperator`` / ``_RefCadOse`` below are the straight port of NAB's
``context_operator.py`` and ``cad_ose.py`` (MIT, Copyright 2016 Numenta Inc., author
Mikhail Smirnov) that the module shipped before it was vectorised: every step walks
every semi-context. The fast version must give the same score on every row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from udfs.detectors.contextual import _CadOse
from udfs.detectors.registry import create
from udfs.series import probation_rows

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab" / "data"

_NEURON_OFFSET = 2**31
_SIGN_FACT = -1


class _RefContextOperator:
    def __init__(self, max_left_semi_contexts_length: int) -> None:
        self.max_left_len = max_left_semi_contexts_length
        self.facts_dics: list[dict[int, list[list[Any]]]] = [{}, {}]
        self.semi_context_dics: list[dict[int, int]] = [{}, {}]
        self.semi_cont_val_lists: list[list[list[Any]]] = [[], []]
        self.crossed_semi_contexts_lists: list[list[list[Any]]] = [[], []]
        self.contexts_values_list: list[list[Any]] = []
        self.new_context_id: int | bool = False

    def get_context_by_facts(
        self, new_contexts: list[tuple[tuple[int, ...], tuple[int, ...]]], zerolevel: int = 0
    ) -> int | bool:
        num_added = 0
        for left_facts, right_facts in new_contexts:
            left_hash, right_hash = hash(left_facts), hash(right_facts)
            next_left = len(self.semi_context_dics[0])
            left_id = self.semi_context_dics[0].setdefault(left_hash, next_left)
            if left_id == next_left:
                left_val: list[Any] = [[], len(left_facts), 0, {}]
                self.semi_cont_val_lists[0].append(left_val)
                for fact in left_facts:
                    self.facts_dics[0].setdefault(fact, []).append(left_val)
            next_right = len(self.semi_context_dics[1])
            right_id = self.semi_context_dics[1].setdefault(right_hash, next_right)
            if right_id == next_right:
                right_val: list[Any] = [[], len(right_facts), 0]
                self.semi_cont_val_lists[1].append(right_val)
                for fact in right_facts:
                    self.facts_dics[1].setdefault(fact, []).append(right_val)
            next_free = len(self.contexts_values_list)
            context_id = self.semi_cont_val_lists[0][left_id][3].setdefault(right_id, next_free)
            if context_id == next_free:
                num_added += 1
                self.contexts_values_list.append([0, zerolevel, left_hash, right_hash])
                if zerolevel:
                    self.new_context_id = context_id
                    return True
            else:
                if zerolevel:
                    self.contexts_values_list[context_id][1] = 1
                    return False
        return num_added

    def context_crosser(
        self,
        left_or_right: int,
        facts: tuple[int, ...],
        new_context_flag: bool = False,
        potential_new_contexts: list[tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> Any:
        num_new = 0
        if left_or_right == 0 and potential_new_contexts:
            num_new = int(self.get_context_by_facts(potential_new_contexts))
        for vals in self.crossed_semi_contexts_lists[left_or_right]:
            vals[0] = []
            vals[2] = 0
        for fact in facts:
            for vals in self.facts_dics[left_or_right].get(fact, []):
                vals[0].append(fact)
        crossed = []
        for vals in self.semi_cont_val_lists[left_or_right]:
            vals[2] = len(vals[0])
            if vals[2] > 0:
                crossed.append(vals)
        self.crossed_semi_contexts_lists[left_or_right] = crossed
        if left_or_right:
            return self._update_contexts_and_get_active(new_context_flag)
        return num_new

    def _update_contexts_and_get_active(
        self, new_context_flag: bool
    ) -> tuple[list[list[Any]], int, list[tuple[tuple[int, ...], tuple[int, ...]]]]:
        active: list[list[Any]] = []
        num_selected = 0
        potential: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        for left_val in self.crossed_semi_contexts_lists[0]:
            for right_id, context_id in left_val[3].items():
                if self.new_context_id == context_id:
                    continue
                ctx = self.contexts_values_list[context_id]
                right_facts, right_len, right_crossed = self.semi_cont_val_lists[1][right_id]
                if left_val[1] == left_val[2]:
                    num_selected += 1
                    if right_crossed > 0:
                        if right_len == right_crossed:
                            ctx[0] += 1
                            active.append([context_id, ctx[0], ctx[2], ctx[3]])
                        elif ctx[1] and new_context_flag and left_val[2] <= self.max_left_len:
                            potential.append((tuple(left_val[0]), tuple(right_facts)))
                elif (
                    ctx[1]
                    and new_context_flag
                    and right_crossed > 0
                    and left_val[2] <= self.max_left_len
                ):
                    potential.append((tuple(left_val[0]), tuple(right_facts)))
        self.new_context_id = False
        return active, num_selected, potential


class _RefCadOse:
    def __init__(self, min_value: float, max_value: float, rest_period: float) -> None:
        self.min_value = min_value
        self.rest_period = rest_period
        self.base_threshold = 0.75
        self.max_active_neurons = 15
        self.bits = 3
        max_bin = 2.0**self.bits - 1.0
        full_range = max_value - min_value
        self.step_size = (full_range if full_range > 0 else max_bin) / max_bin
        self.left_facts: tuple[int, ...] = ()
        self.ops = _RefContextOperator(7)
        self.history = [1.0]

    def _step(self, facts: set[int]) -> tuple[float, float]:
        sens = tuple(sorted(facts))
        uniq_potential: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        new_context_flag = False
        if self.left_facts and sens:
            zero_level = (self.left_facts, sens)
            uniq_potential.add(zero_level)
            new_context_flag = bool(self.ops.get_context_by_facts([zero_level], zerolevel=1))
        active, num_selected, potential = self.ops.context_crosser(
            1, sens, new_context_flag=new_context_flag
        )
        uniq_potential.update(potential)
        share_active = len(active) / float(num_selected) if num_selected > 0 else 0.0
        ranked = sorted(active, key=lambda c: (c[1], c[2], c[3]))
        neurons = {_NEURON_OFFSET + c[0] for c in ranked[-self.max_active_neurons :]}
        self.left_facts = tuple(sorted(set(sens) | neurons))
        num_new = self.ops.context_crosser(0, self.left_facts, potential_new_contexts=potential) + (
            1 if new_context_flag else 0
        )
        share_new = (
            num_new / float(len(uniq_potential)) if new_context_flag and uniq_potential else 0.0
        )
        return share_active, share_new

    def _facts(self, value: float) -> set[int]:
        level = int((value - self.min_value) / self.step_size)
        digits = bin(abs(level))[2:].rjust(self.bits, "0")
        facts = {pos * 2 + (digit == "1") for pos, digit in enumerate(reversed(digits))}
        if level < 0:
            facts.add(_SIGN_FACT)
        return facts

    def score_one(self, value: float) -> float:
        share_active, share_new = self._step(self._facts(value))
        current = (1.0 - share_active + share_new) / 2.0
        recent = self.history[-int(self.rest_period) :] if int(self.rest_period) else []
        out = current if not recent or max(recent) < self.base_threshold else 0.0
        self.history.append(current)
        return out


def _both(values: np.ndarray, train: int) -> tuple[list[float], list[float]]:
    lo, hi = float(values[:train].min()), float(values[:train].max())
    rest = 0.2 * train
    ref = _RefCadOse(lo, hi, rest)
    fast = _CadOse(lo, hi, 0.75, rest, 7, 15, 3)
    return [ref.score_one(float(v)) for v in values], [fast.score_one(float(v)) for v in values]


@pytest.mark.skipif(not NAB.is_dir(), reason="shared NAB data absent")
@pytest.mark.parametrize(
    "series",
    [
        "realKnownCause/machine_temperature_system_failure.csv",
        "realAWSCloudwatch/ec2_cpu_utilization_fe7f93.csv",
    ],
)
def test_fast_port_scores_a_nab_series_exactly_as_the_original(series: str) -> None:
    values = pd.read_csv(NAB / series)["value"].to_numpy(np.float64)[:3000]
    ref, fast = _both(values, probation_rows(3000))
    assert fast == ref  # exact floats, every row
    assert max(ref) > 0.75  # the stretch holds detections, not just a flat zero


def test_fast_port_matches_the_original_across_a_level_shift() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(3000)
    values = 10.0 + 3.0 * np.sin(2 * np.pi * t / 144) + rng.normal(0.0, 0.3, 3000)
    values[2000:] += 12.0  # far above the training range: sign-free extra bit facts
    values[1200:1210] -= 20.0  # below it: the sign fact
    ref, fast = _both(values, 450)
    assert fast == ref
    assert max(ref[2000:2010]) > 0.75  # the original sees the shift at once


def test_detector_encodes_in_the_training_range_widened_by_the_margin() -> None:
    rng = np.random.default_rng(5)
    values = 50.0 + 10.0 * np.sin(np.arange(800) / 20.0) + rng.normal(0.0, 1.0, 800)
    values[600] = 200.0
    train = values[:300]
    lo, hi = float(train.min()), float(train.max())
    for margin in (0.0, 0.5):
        pad = margin * (hi - lo)
        ref = _RefCadOse(lo - pad, hi + pad, rest_period=0.2 * 300)
        expected = [ref.score_one(float(v)) for v in values]
        det = create("cad_ose", range_margin=margin).fit(train[:, None])
        assert det.score(values[:, None]).tolist() == expected
    default = create("cad_ose").fit(train[:, None])
    assert default.min_[0] == pytest.approx(lo - 0.5 * (hi - lo))
    assert default.max_[0] == pytest.approx(hi + 0.5 * (hi - lo))


def test_grow_range_widens_the_encoding_after_an_out_of_range_row() -> None:
    cad = _CadOse(0.0, 7.0, 0.75, 10, 7, 15, 3, grow_range=True)
    # Step 1.0: 3 is level 3 (bits 1,1,0 from the lowest: facts 1, 3, 4).
    assert cad._facts(3.0) == {1, 3, 4}
    cad.score_one(3.0)
    assert (cad.min_value, cad.max_value) == (0.0, 7.0)  # inside: unchanged
    # 14 is scored in the old range (level 14: a fourth bit, fact 7), then the range
    # becomes [0, 14]: step 2, so 3 is now level 1 (facts 1, 2, 4).
    assert cad._facts(14.0) == {0, 3, 5, 7}
    cad.score_one(14.0)
    assert (cad.min_value, cad.max_value, cad.step_size) == (0.0, 14.0, 2.0)
    assert cad._facts(3.0) == {1, 2, 4}


def test_bad_range_margin_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="range_margin"):
        create("cad_ose", range_margin=-0.1)
