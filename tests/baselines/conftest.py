"""Fixtures of the baseline tests: the demo split, its shards, one thread per test process.

The tiny models are so small that torch's intra-op threads only add synchronisation; on a shared
CPU two threads made a training step 20 times slower than one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tavgbench.data.demo import DemoLayout, write_demo


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoLayout:
    """Four demo clips (``split.csv``, ``reference/<id>.mp4``)."""
    return write_demo(tmp_path_factory.mktemp("demo"), n_clips=4)


@pytest.fixture(scope="session")
def shards(demo: DemoLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo reference clips in two-clip shards."""
    pytest.importorskip("webdataset", reason="needs the [baselines] extra")
    from tavgbench.baselines.tavdiffusion.data import write_shards

    out = tmp_path_factory.mktemp("shards")
    write_shards(demo.reference_dir, demo.manifest, out, shard_size=2)
    return out
