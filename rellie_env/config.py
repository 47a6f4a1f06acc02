"""The arguments that the single and the batched environment share, checked in one place."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from rellie_env.core import validate_reward_mode
from rellie_env.curves import ActionSet
from rellie_env.images import Augmentation, Degradation, ImageSet, load_images, to_float_rgb
from rellie_env.losses import LossWeights

# ``LowLight-v0``'s flat arguments, each the field of one part of the nested :class:`EnvConfig`.
FLAT_ARGUMENTS: dict[str, tuple[str, str]] = {
    "n_actions": ("action_set", "n_actions"),
    "action_offset": ("action_set", "offset"),
    "action_scale": ("action_set", "scale"),
    "lead_channel": ("action_set", "lead_channel"),
    "lead_weight": ("action_set", "lead_weight"),
    "blend": ("action_set", "blend"),
    "exposure_level": ("weights", "exposure_level"),
    "exposure_patch": ("weights", "exposure_patch"),
    "spatial_weight": ("weights", "spatial"),
    "exposure_weight": ("weights", "exposure"),
    "color_weight": ("weights", "color"),
    "smoothness_weight": ("weights", "smoothness"),
    "color_mode": ("weights", "color_mode"),
    "statistics_weight": ("weights", "statistics"),
    "chroma_weight": ("weights", "chroma"),
    "log_white": ("weights", "log_white"),
    "crop_size": ("augmentation", "crop_size"),
    "flip_prob": ("augmentation", "flip_prob"),
    "rotate_prob": ("augmentation", "rotate_prob"),
    "max_rotation": ("augmentation", "max_rotation"),
    "min_scale": ("augmentation", "min_scale"),
    "fit_scale": ("augmentation", "fit_scale"),
}


@dataclass(frozen=True)
class EnvConfig:
    """Arguments of ``LowLight-v0`` (see :class:`rellie_env.env.LowLightEnv` for their meaning), nested: the
    curve and actions, the loss, the augmentation and the darkening are each their own dataclass.
    :meth:`from_kwargs` takes the environment's flat arguments."""

    data: Any = "builtin"
    targets: str | None = None
    max_steps: int = 10
    reward_mode: str = "paper"
    action_set: ActionSet = ActionSet()
    weights: LossWeights = LossWeights()
    augmentation: Augmentation = Augmentation()
    degradation: Degradation | None = None
    fidelity: bool = False
    exposure_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        validate_reward_mode(self.reward_mode)
        if self.exposure_range is not None:
            lo, hi = self.exposure_range
            if not 0.0 < lo < hi < 1.0:
                raise ValueError(f"exposure_range must be (lo, hi) with 0 < lo < hi < 1, got {self.exposure_range}")
            object.__setattr__(self, "exposure_range", (float(lo), float(hi)))
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, np.integer)) or self.max_steps < 1:
            raise ValueError(f"max_steps must be an integer of at least 1, got {self.max_steps!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvConfig:
        """The config of ``LowLight-v0(**kwargs)``: flat arguments (``crop_size=64``, ``exposure_level=0.5``,
        ...; :data:`FLAT_ARGUMENTS`) set fields of their part; whole parts (``action_set=ActionSet(...)``) may
        be given too."""
        own = {f.name for f in fields(cls)}
        direct: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for key, value in kwargs.items():
            if key in FLAT_ARGUMENTS:
                part, name = FLAT_ARGUMENTS[key]
                parts.setdefault(part, {})[name] = value
            elif key in own:
                direct[key] = degradation_of(value) if key == "degradation" else value
            else:
                raise TypeError(f"LowLight-v0 got an unexpected argument {key!r}")
        for part, values in parts.items():
            direct[part] = replace(direct.get(part, getattr(cls, part)), **values)
        return cls(**direct)

    def flat(self) -> dict[str, Any]:
        """The config as ``LowLight-v0``'s flat arguments (a JSON-friendly dict; :meth:`from_kwargs` inverts it)."""
        out: dict[str, Any] = {"data": self.data, "targets": self.targets, "max_steps": self.max_steps,
                               "reward_mode": self.reward_mode, "fidelity": self.fidelity,
                               "exposure_range": self.exposure_range}
        for flat_name, (part, name) in FLAT_ARGUMENTS.items():
            out[flat_name] = getattr(getattr(self, part), name)
        out["degradation"] = None if self.degradation is None else dataclasses.asdict(self.degradation)
        return out

    def load_source(self) -> ImageSet:
        return load_images(self.data, self.targets, self.degradation)


def degradation_of(value: Degradation | dict | None) -> Degradation | None:
    """A :class:`Degradation` from itself or from a dict of its fields (as a JSON config holds it)."""
    if value is None or isinstance(value, Degradation):
        return value
    return Degradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


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
    degradation = source.degradation(index)
    if degradation is not None and degradation.per_episode:
        clean, _ = augmentation(rng, source.target(index))
        return degradation.apply(clean, rng), clean
    return augmentation(rng, source.image(index), source.target(index))


def episode_exposure(rng: np.random.Generator, config: EnvConfig, given: Any = None) -> float | None:
    """An episode's target brightness E: ``given`` (checked against the range), else drawn uniformly from
    ``config.exposure_range`` with ``rng``; ``None`` when the env has no range (the loss's own E)."""
    if config.exposure_range is None:
        if given is not None:
            raise ValueError("options['exposure'] needs an env made with exposure_range=(lo, hi)")
        return None
    lo, hi = config.exposure_range
    if given is None:
        return float(rng.uniform(lo, hi))
    if not (isinstance(given, (int, float, np.floating)) and lo <= float(given) <= hi):
        raise ValueError(f"options['exposure'] must lie in the env's exposure_range [{lo}, {hi}], got {given!r}")
    return float(given)


def min_side(weights: LossWeights) -> int:
    """The smallest image side the loss can score: one exposure patch and one spatial block."""
    return max(weights.exposure_patch, weights.spatial_block)


def start_image(image: Any, target: Any, weights: LossWeights) -> tuple[np.ndarray, np.ndarray | None]:
    """An episode's given input image (and target) as float RGB arrays, or a ValueError saying what is wrong."""
    image = to_float_rgb(image)
    side = min_side(weights)
    if min(image.shape[:2]) < side:
        raise ValueError(f"the image must be at least {side} x {side} pixels (one exposure patch), got "
                         f"{image.shape[0]} x {image.shape[1]}")
    if target is not None:
        target = to_float_rgb(target)
        if target.shape != image.shape:
            raise ValueError(f"the target must have the image's shape {image.shape}, got {target.shape}")
    return image, target


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

