"""Saving and loading policies: SB3 ``.zip`` models, plain weight files, the official ``.npz``, the default."""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

from agents.official import load_official_rellie
from agents.policies import PixelActorCriticPolicy

WEIGHTS_FORMAT = "rellie-policy-v1"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "rellie_default.pt"
EXPOSURE_MODEL = DEFAULT_MODEL.with_name("rellie_exposure.pt")  # trained with a target brightness per episode


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one step: no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a checkpoint is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_model(model: BaseAlgorithm, path: str | os.PathLike) -> Path:
    """Save an SB3 model as ``.zip``, atomically."""
    return atomic_write(Path(path).with_suffix(".zip"), model.save)


def save_weights(policy: PixelActorCriticPolicy, path: str | os.PathLike) -> Path:
    """Save a policy as a plain weights file (``torch.save`` of tensors and its constructor arguments)."""
    payload = {
        "format": WEIGHTS_FORMAT,
        "observation_shape": list(policy.observation_space.shape),
        "policy_kwargs": policy.pixel_kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _policy(shape: tuple[int, int, int], n_actions: int, **kwargs: Any) -> PixelActorCriticPolicy:
    actions = (3, *shape[1:])  # one head per colour channel, whatever the observation's planes
    return PixelActorCriticPolicy(
        spaces.Box(0.0, 1.0, shape, np.float32), spaces.MultiDiscrete(np.full(actions, n_actions)), lambda _: 0.0,
        **kwargs,
    )


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> PixelActorCriticPolicy:
    """Load a policy for acting from an SB3 ``.zip`` (any of our algorithms), a weights file written by
    :func:`save_weights` (``.pt``) or the released ReLLIE ``.npz``. Raises ``ValueError`` naming the file
    when it is missing, unreadable or not a compatible policy."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        return load_official_rellie(path, device=device)
    try:
        if zipfile.is_zipfile(path) and path.suffix == ".zip":
            data, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
            kwargs = dict(data.get("policy_kwargs") or {})
            policy = PixelActorCriticPolicy(data["observation_space"], data["action_space"], lambda _: 0.0,
                                            **{k: v for k, v in kwargs.items() if k != "optimizer_kwargs"})
            state = params["policy"]
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
                raise ValueError("not a rellie weights file")
            state = payload["state_dict"]
            n_actions = payload["policy_kwargs"]["action_set"].get("n_actions", 27)
            policy = _policy(tuple(payload["observation_shape"]), n_actions, **payload["policy_kwargs"])
        policy.load_state_dict(state)
    except ValueError as exc:
        raise ValueError(f"{str(path)!r} is not a compatible rellie policy: {exc}") from exc
    except Exception as exc:  # torch/zip/pickle raise many types on a bad file
        raise ValueError(f"{str(path)!r} could not be read as a rellie policy: {type(exc).__name__}: {exc}") from exc
    return policy.to(device).eval()


def load_default(device: str | torch.device = "cpu", exposure_control: bool = False) -> PixelActorCriticPolicy:
    """The model that ships with the package (used by ``rellie-evaluate``, ``rellie-enhance`` and ``make demo``;
    how it was trained: README, "The shipped model").

    :param exposure_control: the second shipped model instead, trained with a target brightness E per episode
        (``policy.exposure_range``), which takes ``enhance(..., exposure=E)``; the default model was trained at
        one E and is the more faithful there.
    """
    return load_policy(EXPOSURE_MODEL if exposure_control else DEFAULT_MODEL, device)
