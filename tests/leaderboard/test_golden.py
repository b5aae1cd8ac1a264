"""The golden-value machinery: seeded random weights and the comparison with its tolerance."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from tavgbench.leaderboard.golden import RELATIVE_TOLERANCE, compare_part, seeded_state_dict


def _template() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.zeros(64, 32, 3, 3),
        "conv.bias": torch.full((64,), 7.0),
        "bn.weight": torch.zeros(64),
        "bn.running_mean": torch.full((64,), 3.0),
        "bn.running_var": torch.zeros(64),
        "attn.in_proj_bias": torch.full((96,), 2.0),
        "cls_embedding": torch.zeros(512),
        "logit_scale": torch.tensor(2.5),
        "position_ids": torch.arange(5),
    }


def test_seeded_weights_follow_the_rules_and_the_seed() -> None:
    first = seeded_state_dict(_template(), seed=4)
    again = seeded_state_dict(_template(), seed=4)
    other = seeded_state_dict(_template(), seed=5)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv.weight"], other["conv.weight"])
    assert torch.count_nonzero(first["conv.bias"]) == 0
    assert torch.count_nonzero(first["attn.in_proj_bias"]) == 0
    assert torch.count_nonzero(first["bn.running_mean"]) == 0
    assert torch.all(first["bn.weight"] == 1) and torch.all(first["bn.running_var"] == 1)
    assert first["logit_scale"].item() == 2.5
    assert torch.equal(first["position_ids"], torch.arange(5))
    # He initialisation: std sqrt(2 / fan_in), fan_in = 32 * 3 * 3; 18432 draws give the sample
    # std within 2% (its relative standard error is 1/sqrt(2n) = 0.5%).
    assert first["conv.weight"].std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.02)
    assert first["cls_embedding"].std().item() == pytest.approx(1 / math.sqrt(512), rel=0.1)
    assert all(first[k].dtype == v.dtype for k, v in _template().items())


def _part() -> dict[str, Any]:
    values = {
        "fvd": {"value": 20.0, "ci95": [6.0, 60.0], "ci_method": "B=100"},
        "kvd": {"value": 0.8, "ci95": [-0.02, 1.8], "ci_method": "B=100"},
    }
    return {
        "demo": {"manifest_sha256": "a" * 64},
        "extractors": {"i3d": {"name": "i3d", "version": "1", "protocol": {"size": 193}}},
        "values": {"faithful": copy.deepcopy(values), "degraded": copy.deepcopy(values)},
    }


def test_changes_within_the_tolerance_pass() -> None:
    actual = _part()
    actual["values"]["faithful"]["fvd"]["value"] *= 1 + RELATIVE_TOLERANCE / 2
    # A bound near zero is measured against its metric's value (0.8): 2e-5 is 2.5e-5 of it.
    actual["values"]["degraded"]["kvd"]["ci95"][0] += 2e-5
    assert compare_part(_part(), actual) == []


def test_every_change_beyond_the_tolerance_is_listed() -> None:
    actual = _part()
    actual["values"]["faithful"]["fvd"]["value"] *= 1 + 2 * RELATIVE_TOLERANCE
    actual["values"]["degraded"]["kvd"]["ci95"][1] = 1.81
    actual["values"]["degraded"]["kvd"]["ci_method"] = "B=50"
    del actual["values"]["faithful"]["kvd"]
    actual["demo"]["manifest_sha256"] = "b" * 64
    actual["extractors"]["i3d"]["protocol"]["size"] = 224
    problems = compare_part(_part(), actual)
    assert len(problems) == 6
    assert problems[0].startswith("the i3d extractor describes itself differently")
    assert "the demo generator changed" in problems[1]
    assert any(
        p.startswith("faithful fvd value: golden 20.0, now 20.00")
        and "change 2.00e-04 > 0.0001" in p
        for p in problems
    )
    assert "faithful kvd: not computed any more" in problems
    assert any(p.startswith("degraded kvd ci95[1]: golden 1.8, now 1.81") for p in problems)
    assert "degraded kvd ci_method: golden 'B=100', now 'B=50'" in problems
