"""Shared test setup (one torch thread: 2-core machines make 2 threads erratic; denormals flushed) and helpers."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np
import pytest
import skimage.data
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


def small_policy(size=32, **kwargs):
    """A narrow policy (width 8 unless given) for ``LowLightEnv(crop_size=size)``'s spaces."""
    from agents.policies import PixelActorCriticPolicy
    from rellie_env.env import LowLightEnv

    env = LowLightEnv(crop_size=size)
    kwargs.setdefault("width", 8)
    return PixelActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)


def nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)


def psnr_np(x: np.ndarray, target: np.ndarray) -> float:
    from rellie_env.metrics import psnr

    return float(psnr(nchw(x), nchw(target))[0])


def dark_photo(h: int, w: int) -> np.ndarray:
    """The astronaut resized to ``h x w`` and darkened, float32 RGB."""
    photo = cv2.resize(skimage.data.astronaut(), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    return (photo**2.2 * 0.45).astype(np.float32)
