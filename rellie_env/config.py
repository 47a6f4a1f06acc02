"""The arguments that the single and the batched environment share, checked in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rellie_env.core import validate_reward_mode
from rellie_env.curves import ActionSet
from rellie_env.images import Augmentation, Degradation, ImageSet, load_images
from rellie_env.losses import LossWeights


@dataclass
class EnvConfig:
    """Arguments of ``LowLight-v0`` (see :class:`rellie_env.env.LowLightEnv` for their meaning)."""

    data: Any = "builtin"
    targets: str | None = None
    crop_size: int | None = 70
    max_steps: int = 10
    reward_mode: str = "paper"
    # non-reference loss
    exposure_level: float = 0.6
    exposure_patch: int = 16
    spatial_weight: float = 1.0
    exposure_weight: float = 80.0
    color_weight: float = 50.0
    smoothness_weight: float = 200.0
    color_mode: str = "grey-world"
    # actions and curve step
    n_actions: int = 27
    action_offset: int = 6
    action_scale: float = 0.05
    lead_channel: int | None = 2
    lead_weight: float = 0.9
    blend: float = 0.8
    # augmentation and built-in degradation
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_rotation: float = 10.0
    min_scale: float = 1.0
    degradation: Degradation | None = None

    def __post_init__(self) -> None:
        validate_reward_mode(self.reward_mode)
        if int(self.max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")
        self.action_set = ActionSet(
            self.n_actions, self.action_offset, self.action_scale, self.lead_channel, self.lead_weight, self.blend
        )
        self.weights = LossWeights(
            self.spatial_weight,
            self.exposure_weight,
            self.color_weight,
            self.smoothness_weight,
            self.exposure_level,
            self.exposure_patch,
            color_mode=self.color_mode,
        )
        self.augmentation = Augmentation(
            self.crop_size, self.flip_prob, self.rotate_prob, self.max_rotation, self.min_scale
        )

    def load_source(self) -> ImageSet:
        return load_images(self.data, self.targets, self.degradation)


def sample_start(
    rng: np.random.Generator, source: ImageSet, augmentation: Augmentation, index: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw an episode's input image (and its target) from ``source``: the same draws in every environment.

    A clean photo to darken is augmented first and its crop darkened afresh (when the source's degradation
    is ``per_episode``): the darkening costs only the crop.
    """
    if index is None:
        index = source.draw(rng)
    elif not 0 <= index < len(source):
        raise ValueError(f"options['index'] must lie in [0, {len(source)}), got {index}")
    if source.darkened(index) and source.degradation.per_episode:
        clean, _ = augmentation(rng, source.target(index))
        return source.degradation.apply(clean, rng), clean
    return augmentation(rng, source.image(index), source.target(index))


def check_actions(actions: np.ndarray | Sequence, shape: tuple[int, ...], n_actions: int) -> np.ndarray:
    """The action map as an int64 array, or a ValueError saying what was expected."""
    a = np.asarray(actions)
    if a.shape != shape:
        raise ValueError(f"action map must have shape {shape} (channels, height, width), got {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)))):
        raise ValueError(f"actions must be integers in [0, {n_actions}), got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions must lie in [0, {n_actions}), got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int64)
