"""Shared test setup: one torch thread (2-core machines make 2 threads erratic), denormals flushed."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)
torch.set_flush_denormal(True)

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_file(name: str) -> Path:
    """Path of a file in ../shared/reference, or skip the test saying why."""
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference file {path} is absent (only the project's own machines have ../shared/reference)")
    return path
