"""Rollout storage with one reward, value and log-probability per pixel, kept as torch tensors."""
from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer


class PixelRolloutBufferSamples(NamedTuple):
    observations: torch.Tensor  # (N, 3, H, W)
    actions: torch.Tensor  # (N, heads, H, W) uint8
    old_values: torch.Tensor  # (N, value_heads, H, W)
    old_log_prob: torch.Tensor  # (N, value_heads, H, W)
    advantages: torch.Tensor  # (N, value_heads, H, W)
    returns: torch.Tensor  # (N, value_heads, H, W)


class PixelRolloutBuffer(RolloutBuffer):
    """SB3's ``RolloutBuffer`` with maps instead of scalars: rewards, values, log-probabilities, returns and
    advantages are ``(n_steps, n_envs, value_heads, H, W)``; returns and GAE are computed per pixel (and per
    head when ``value_heads`` is the number of heads, for per-head rewards; the algorithm sets it from
    its policy).

    Everything lives on ``device`` as torch tensors (a GPU rollout never visits numpy) and actions are
    stored as uint8. Memory: ``n_steps * n_envs * H * W * (3 * 4 + heads + 5 * 4 * value_heads)`` bytes,
    e.g. 55 MB at the released settings (10 steps, 32 envs, 70x70, 3 heads, one value per pixel).

    :param buffer_size: steps per environment in a rollout.
    :param observation_space: ``Box(0, 1, (3, H, W))``.
    :param action_space: the action map ``MultiDiscrete((heads, H, W))`` (or flattened).
    :param device: torch device of the storage.
    :param gae_lambda: GAE lambda (1 gives Monte-Carlo returns, as released).
    :param gamma: discount (1.05 as released; a value above 1 weighs later steps more).
    :param n_envs: number of parallel environments.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Box,
        action_space: spaces.MultiDiscrete,
        device: torch.device | str = "auto",
        gae_lambda: float = 1.0,
        gamma: float = 0.99,
        n_envs: int = 1,
    ) -> None:
        c, h, w = observation_space.shape
        self.map_shape = (h, w)
        self.n_heads = int(np.prod(action_space.shape)) // (h * w)
        self.value_heads = 1
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        t, n, dev = self.buffer_size, self.n_envs, self.device
        maps = (t, n, self.value_heads, *self.map_shape)
        self.observations = torch.zeros((t, n, *self.obs_shape), device=dev)
        self.actions = torch.zeros((t, n, self.n_heads, *self.map_shape), dtype=torch.uint8, device=dev)
        self.rewards, self.values, self.log_probs, self.advantages, self.returns = (
            torch.zeros(maps, device=dev) for _ in range(5)
        )
        self.episode_starts = torch.zeros((t, n), device=dev)
        self.generator_ready = False
        self.pos, self.full = 0, False

    def add(  # type: ignore[override]
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        episode_start: torch.Tensor,
        value: torch.Tensor,
        log_prob: torch.Tensor,
    ) -> None:
        """Store one step of all envs: maps ``(n_envs, value_heads, H, W)``, ``episode_start`` ``(n_envs,)``."""
        p = self.pos
        self.observations[p] = obs
        self.actions[p] = action.view(self.n_envs, self.n_heads, *self.map_shape)
        self.rewards[p] = reward
        self.episode_starts[p] = episode_start
        self.values[p] = value
        self.log_probs[p] = log_prob
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def compute_returns_and_advantage(self, last_values: torch.Tensor, dones: torch.Tensor) -> None:  # type: ignore[override]
        """GAE(lambda) per pixel; a done step does not bootstrap (episodes end at their horizon, as released).

        :param last_values: value maps ``(n_envs, value_heads, H, W)`` of the observation after the last step.
        :param dones: ``(n_envs,)`` whether the last step ended an episode.
        """
        last_gae = torch.zeros_like(last_values)
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal, next_values = 1.0 - dones.float(), last_values
            else:
                next_non_terminal, next_values = 1.0 - self.episode_starts[step + 1], self.values[step + 1]
            next_non_terminal = next_non_terminal.view(-1, 1, 1, 1)
            delta = self.rewards[step] + self.gamma * next_values * next_non_terminal - self.values[step]
            last_gae = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae
            self.advantages[step] = last_gae
        self.returns = self.advantages + self.values

    def get(self, batch_size: int | None = None) -> Generator[PixelRolloutBufferSamples, None, None]:  # type: ignore[override]
        """Minibatches of whole images (``batch_size`` images; all of them when ``None``), shuffled."""
        assert self.full, "the rollout buffer is not full"
        total = self.buffer_size * self.n_envs
        order = torch.randperm(total, device=self.device)
        batch_size = total if batch_size is None else batch_size
        for start in range(0, total, batch_size):
            yield self._get_samples(order[start : start + batch_size])

    def _get_samples(self, batch_inds: torch.Tensor, env=None) -> PixelRolloutBufferSamples:  # type: ignore[override]
        def flat(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, *x.shape[2:])[batch_inds]

        return PixelRolloutBufferSamples(
            flat(self.observations), flat(self.actions), flat(self.values),
            flat(self.log_probs), flat(self.advantages), flat(self.returns),
        )
