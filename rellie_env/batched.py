"""A batch of ``LowLight-v0`` environments stepped as one torch computation, on any device."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding

from rellie_env.config import EnvConfig, episode_exposure, sample_start
from rellie_env.core import EpisodeInput, observation, state_loss, transition
from rellie_env.images import stack_nchw
from rellie_env.metrics import psnr, ssim


class BatchedLowLightEnv:
    """B low-light environments whose images live in one ``(B, 3, H, W)`` tensor on ``device``.

    The maths of a step is :func:`rellie_env.core.transition`, the same as :class:`LowLightEnv`'s; image
    sampling at reset uses one numpy generator per sub-environment, drawn in the same order as the single
    environment, so B single environments seeded ``s_i`` and one batched environment seeded ``[s_i]`` give
    the same episodes. A step takes and returns tensors only: no numpy round trip, no host sync.

    :param num_envs: batch size B.
    :param device: ``"cpu"``, ``"cuda"`` or a ``torch.device``. On the CPU, :func:`rellie_env.cpu.tune_cpu`
        (a process-wide allocator setting, called by the command-line tools) makes steps 1.6x faster.
    :param kwargs: the arguments of :class:`~rellie_env.env.LowLightEnv`; ``crop_size`` must be set
        unless all source images share one size.
    """

    render_mode = None

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", **kwargs: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.config = EnvConfig.from_kwargs(**kwargs)
        self.source = self.config.load_source()
        crop = self.config.augmentation.crop_size
        if crop is None:
            sizes = {img.shape[:2] for img in self.source.images}
            if len(sizes) != 1:
                raise ValueError("a batched environment needs crop_size when the source images differ in size")
            self.image_shape = (3, *sizes.pop())
        else:
            self.image_shape = (3, crop, crop)
        self.rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        b = num_envs
        self.image = torch.zeros((b, *self.image_shape), device=self.device)
        exposure = None if self.config.exposure_range is None else torch.zeros(b, device=self.device)
        self.original = EpisodeInput.of(torch.zeros_like(self.image), self.config.weights, exposure)
        self.target = torch.zeros_like(self.image)
        self.has_target = np.zeros(b, dtype=bool)
        self.loss = torch.zeros(b, device=self.device)
        self.steps = np.zeros(b, dtype=np.int64)
        self.started = False

    def seed(self, seed: int | Sequence[int | None] | None) -> None:
        """Seed sub-environment i with ``seed + i`` (an int, as Gymnasium's vector envs do) or ``seed[i]``."""
        if seed is None:
            return
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None:
                self.rngs[i], _ = seeding.np_random(int(s))

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(3, H, W)``, or ``(4, H, W)`` with a target brightness plane (``exposure_range``)."""
        return (3 if self.config.exposure_range is None else 4, *self.image_shape[1:])

    def observations(self) -> torch.Tensor:
        """What the agents see of the episodes in progress: :func:`rellie_env.core.observation`."""
        return observation(self.image, self.original.exposure)

    def state_dict(self) -> dict[str, Any]:
        """Everything a step depends on: the episodes in progress and each sub-environment's random stream."""
        exposure = self.original.exposure
        return {"image": self.image.cpu(), "original": self.original.image.cpu(), "target": self.target.cpu(),
                "exposure": None if exposure is None else exposure.cpu(),
                "has_target": self.has_target.copy(), "loss": self.loss.cpu(), "steps": self.steps.copy(),
                "started": self.started, "rngs": [rng.bit_generator.state for rng in self.rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (of an environment with the same batch and image size)."""
        if tuple(state["image"].shape) != tuple(self.image.shape):
            raise ValueError(f"the saved batch has shape {tuple(state['image'].shape)}, this one {tuple(self.image.shape)}")
        self.image, self.target = state["image"].to(self.device), state["target"].to(self.device)
        exposure = None if state["exposure"] is None else state["exposure"].to(self.device)
        self.original = EpisodeInput.of(state["original"].to(self.device), self.config.weights, exposure)
        self.has_target, self.steps = state["has_target"].copy(), state["steps"].copy()
        self.loss, self.started = state["loss"].to(self.device), state["started"]
        for rng, rng_state in zip(self.rngs, state["rngs"]):
            rng.bit_generator.state = rng_state

    def reset(self, seed: int | Sequence[int | None] | None = None, options: dict | None = None) -> torch.Tensor:
        """Start new episodes in every sub-environment; returns the observations ``(B, 3, H, W)`` (``(B, 4, H,
        W)`` with ``exposure_range``).

        ``options={"index": i}`` starts all from source image i (or ``{"index": [i_0, ...]}``);
        ``options={"exposure": E}`` (or one per sub-environment) sets the target brightness, with
        ``exposure_range``. To start from an image of one's own, use :class:`~rellie_env.env.LowLightEnv`
        (``options={"image": ...}``).
        """
        unknown = set(options or {}) - {"index", "exposure"}
        if unknown:
            raise ValueError(f"the batched environments take options={{'index': ..., 'exposure': ...}} only, got "
                             f"{sorted(unknown)}; start from an image of your own with "
                             "LowLightEnv(...).reset(options={'image': ...})")
        self.seed(seed)
        per_env = [self._per_env((options or {}).get(key)) for key in ("index", "exposure")]
        self.reset_envs(np.arange(self.num_envs), *per_env)
        return self.observations()

    def _per_env(self, value: Any) -> list:
        """An option for every sub-environment: a list as it is, one value repeated."""
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"expected one option per sub-environment ({self.num_envs}), got {len(values)}")
        return values

    def reset_envs(self, envs: np.ndarray, indices: Sequence[int | None] | None = None,
                   exposures: Sequence[float | None] | None = None) -> None:
        """Start new episodes in the sub-environments ``envs`` only (used for auto-reset); ``indices`` and
        ``exposures`` (one per sub-environment of the whole batch, ``None`` to draw) as ``reset``'s options."""
        envs = np.asarray(envs, dtype=np.int64)
        if envs.size == 0:
            return
        images, targets, drawn = [], [], []
        for i in envs:
            image, target = sample_start(self.rngs[i], self.source, self.config.augmentation,
                                         None if indices is None else indices[i])
            drawn.append(episode_exposure(self.rngs[i], self.config, None if exposures is None else exposures[i]))
            self.has_target[i] = target is not None
            images.append(image)
            targets.append(image if target is None else target)
        rows = torch.from_numpy(envs).to(self.device)
        # Observations handed out earlier share memory with the state: copy before writing new episodes in.
        self.image, self.target = self.image.clone(), self.target.clone()
        exposure = None if self.config.exposure_range is None else torch.tensor(drawn, device=self.device)
        new = EpisodeInput.of(stack_nchw(images).to(self.device), self.config.weights, exposure)
        self.original = EpisodeInput(self.original.image.clone(), self.original.blocks.clone(),
                                     None if exposure is None else self.original.exposure.clone())
        self.original.image[rows] = new.image
        self.original.blocks[rows] = new.blocks
        if exposure is not None:
            self.original.exposure[rows] = exposure
        self.image[rows] = new.image
        self.target[rows] = stack_nchw(targets).to(self.device)
        self.loss[rows] = state_loss(new.image, new, self.config.weights)
        self.steps[envs] = 0
        self.started = True

    def step(self, actions: torch.Tensor, rewards: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray,
                                                                        dict[str, Any]]:
        """Apply the action maps ``(B, 3, H, W)`` (any integer dtype, on ``device``).

        :param rewards: compute the reward maps (else they and ``info["reward"]`` are ``None``).
        :return: ``(observations (B, 3 or 4, H, W), reward_maps (B, H, W) or (B, 3, H, W), truncated (B,) numpy bool,
            info)``; the observations
            are a new tensor each step that the environment never writes to again; info holds
            ``"reward"`` (B,), ``"image_loss"`` (B,), ``"loss/<term>"`` (B,) tensors and, for episodes that
            end with a target, ``"psnr"``/``"ssim"`` (B,) tensors (NaN where there is no target). Finished
            sub-environments are not reset here: call :meth:`reset_envs`.
        """
        if not self.started:
            raise RuntimeError("call reset() before step()")
        if actions.shape != self.image.shape:
            raise ValueError(f"action maps must have shape {tuple(self.image.shape)}, got {tuple(actions.shape)}")
        if actions.is_floating_point():
            raise ValueError(f"actions must be an integer tensor, got {actions.dtype}")
        t = transition(
            self.image,
            self.original,
            actions.to(self.device),
            self.config.action_set,
            self.config.weights,
            self.config.reward_mode if rewards else None,
            self.loss,
        )
        self.image, self.loss = t.image, t.image_loss
        self.steps += 1
        truncated = self.steps >= self.config.max_steps
        info: dict[str, Any] = {"reward": t.reward, "image_loss": t.image_loss}
        info.update({f"loss/{k}": v for k, v in t.terms.items()})
        ended = truncated & self.has_target & self.config.fidelity
        if ended.any():
            mask = torch.from_numpy(ended).to(self.device)
            nan = torch.full((self.num_envs,), float("nan"), device=self.device, dtype=torch.float64)
            info["psnr"] = torch.where(mask, psnr(self.image, self.target), nan)
            info["ssim"] = torch.where(mask, ssim(self.image, self.target), nan)
        return self.observations(), t.reward_map, truncated, info
