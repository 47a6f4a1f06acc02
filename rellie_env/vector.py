"""Thin adapters that expose :class:`BatchedLowLightEnv` as a Gymnasium ``VectorEnv`` and an SB3 ``VecEnv``,
and the tensor protocol through which the pixel-wise algorithms run a rollout without leaving torch."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from rellie_env.batched import BatchedLowLightEnv
from rellie_env.config import check_actions
from rellie_env.core import final_loss_shares


class TensorStep(NamedTuple):
    """One step of a :class:`TensorVecEnv`: next observations ``(B, 3, H, W)`` (reset where done), reward maps
    ``(B, H, W)`` or per head ``(B, heads, H, W)`` (``None`` when not asked for), the rewards ``(B,)`` (the
    maps' means), ``dones`` ``(B,)`` numpy bool and SB3-style infos."""

    obs: torch.Tensor
    reward_maps: torch.Tensor | None
    rewards: torch.Tensor | None
    dones: np.ndarray
    infos: list[dict]


@runtime_checkable
class TensorVecEnv(Protocol):
    """What the pixel-wise algorithms (:class:`agents.PixelA2C`, :class:`agents.PixelPPO`) use of an env that
    can step in torch; with any other ``VecEnv`` they read ``info["reward_map"]`` through numpy.

    * ``device``: where its tensors live; ``max_steps``: the length of every episode.
    * ``reset_tensors()``: first observations ``(B, 3, H, W)``.
    * ``step_tensors(actions, reward_maps=True)``: a :class:`TensorStep`; with ``reward_maps=False`` the env
      may skip computing the reward maps (an algorithm that relabels rewards does not need them).
    * ``final_loss_credit(observations, actions)``: the reward relabelling of ``final_credit``: each action's
      share of its episode's final loss, from one whole episode's observations and actions ``(T, B, ...)``.
    """

    device: torch.device
    max_steps: int

    def reset_tensors(self) -> torch.Tensor: ...

    def step_tensors(self, actions: torch.Tensor, reward_maps: bool = True) -> TensorStep: ...

    def final_loss_credit(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...


def single_spaces(batched: BatchedLowLightEnv) -> tuple[spaces.Box, spaces.MultiDiscrete]:
    nvec = np.full(batched.image_shape, batched.config.action_set.n_actions, dtype=np.int64)
    return spaces.Box(0.0, 1.0, batched.observation_shape, np.float32), spaces.MultiDiscrete(nvec)


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


class LowLightVectorEnv(VectorEnv):
    """``gym.make_vec("LowLight-v0", num_envs=B)``: B environments as one batched torch computation.

    Finished sub-environments reset in the same step (``AutoresetMode.SAME_STEP``): their last observation
    and info are in ``info["final_obs"]`` and ``info["final_info"]``. Every episode lasts ``max_steps``.
    Infos are dicts of arrays, each with its ``"_key"`` mask, as in Gymnasium's own vector envs.

    :param num_envs: number of sub-environments.
    :param device: torch device of the batch (``"cpu"`` or ``"cuda"``); observations come back as numpy.
    :param kwargs: the arguments of :class:`~rellie_env.env.LowLightEnv`.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, device: str = "cpu", render_mode: str | None = None, **kwargs: Any):
        if render_mode is not None:
            raise ValueError("the vector environment does not render; use LowLightEnv(render_mode='rgb_array')")
        self.batched = BatchedLowLightEnv(num_envs, device, **kwargs)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = single_spaces(self.batched)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        # batch_space makes an integer Box of a MultiDiscrete with a shape, whose sample() runs ~5x slower
        single = self.single_action_space
        self.action_space = spaces.MultiDiscrete(np.broadcast_to(single.nvec, (num_envs, *single.shape)), single.dtype)
        self.render_mode = None

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        if isinstance(seed, int):
            self.action_space.seed(seed)
        return _numpy(self.batched.reset(seed, options)), {}

    def step(self, actions: np.ndarray):
        a = check_actions(actions, self.action_space.shape, self.batched.config.action_set.n_actions)
        obs, reward_map, truncated, tinfo = self.batched.step(torch.from_numpy(a).to(self.batched.device))
        n = self.num_envs
        mask = np.ones(n, dtype=bool)
        info: dict[str, Any] = {"reward_map": np.ascontiguousarray(_numpy(reward_map)), "_reward_map": mask}
        for key, value in tinfo.items():
            if key != "reward":
                v = _numpy(value)
                info[key], info[f"_{key}"] = v, (~np.isnan(v) if key in ("psnr", "ssim") else mask)
        obs_np = _numpy(obs)
        if truncated.any():
            done = np.flatnonzero(truncated)
            final_obs = np.full(n, None, dtype=object)
            for i in done:
                final_obs[i] = obs_np[i]
            info = {"final_obs": final_obs, "_final_obs": truncated.copy(), "final_info": info}
            info["_final_info"] = truncated.copy()
            self.batched.reset_envs(done)
            obs_np = _numpy(self.batched.observations())
        rewards = _numpy(tinfo["reward"]).astype(np.float64)
        return obs_np, rewards, np.zeros(n, dtype=bool), truncated.copy(), info


class LowLightSB3VecEnv(VecEnv):
    """stable-baselines3 ``VecEnv`` over :class:`BatchedLowLightEnv`.

    Each info carries ``"reward_map"`` ``(H, W)`` (``(3, H, W)`` per head), the loss terms, at an episode's end
    ``"terminal_observation"``, ``"TimeLimit.truncated"`` and ``"episode"`` (return, length, time, so no
    ``VecMonitor`` is needed). Pixel-wise algorithms skip the numpy path through :meth:`step_tensors`.

    :param num_envs: number of sub-environments.
    :param device: torch device of the batch.
    :param seed: seed of the first reset (sub-environment i gets ``seed + first_index + i``; SB3's algorithms
        set it to their own seed).
    :param first_index: where this env's sub-environments start in a batch split over processes (rank r of a
        distributed run holds sub-environments ``r * num_envs ...``), so that the split batch draws the
        episodes one process would draw.
    :param kwargs: the arguments of :class:`~rellie_env.env.LowLightEnv`.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", seed: int | None = None,
                 first_index: int = 0, **kwargs: Any):
        self.batched = BatchedLowLightEnv(num_envs, device, **kwargs)
        observation_space, action_space = single_spaces(self.batched)
        super().__init__(num_envs, observation_space, action_space)
        self.first_index = first_index
        self._seed = seed
        self._actions: np.ndarray | None = None
        self._returns = torch.zeros(num_envs, dtype=torch.float64, device=self.batched.device)
        self._start = time.time()

    # -- the TensorVecEnv protocol, used by agents.PixelA2C / PixelPPO ------------------------------------
    @property
    def device(self) -> torch.device:
        return self.batched.device

    @property
    def max_steps(self) -> int:
        return self.batched.config.max_steps

    def reset_tensors(self) -> torch.Tensor:
        obs = self.batched.reset(None if self._seed is None else [self._seed + self.first_index + i
                                                                   for i in range(self.num_envs)])
        self._seed = None
        self._returns.zero_()
        return obs

    def step_tensors(self, actions: torch.Tensor, reward_maps: bool = True) -> TensorStep:
        """Step with an action tensor; the next observations are reset where done. Infos are empty but at an
        episode's end, where they hold SB3's episode record, the final image's loss terms and
        ``"terminal_observation"`` (a tensor on the batch's device). Without ``reward_maps`` the rewards are
        not computed (``None``), nor the episode returns."""
        obs, reward_map, dones, tinfo = self.batched.step(actions, rewards=reward_maps)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        if reward_maps:
            self._returns += tinfo["reward"]  # on the device: no host sync until an episode ends
        if dones.any():
            done = np.flatnonzero(dones)
            ended = {k: _numpy(v) for k, v in tinfo.items() if k != "reward"}
            returns = _numpy(self._returns)
            for i in done:
                infos[i] = {k: float(v[i]) for k, v in ended.items()}
                infos[i]["terminal_observation"] = obs[i]
                infos[i]["TimeLimit.truncated"] = True
                infos[i]["episode"] = {
                    "r": float(returns[i]) if reward_maps else float("nan"),
                    "l": int(self.batched.steps[i]),
                    "t": round(time.time() - self._start, 6),
                }
            self._returns[torch.from_numpy(done).to(self._returns.device)] = 0.0
            self.batched.reset_envs(done)
            obs = self.batched.observations().clone()
        return TensorStep(obs, reward_map, tinfo.get("reward"), dones, infos)

    def final_loss_credit(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """:func:`rellie_env.core.final_loss_shares` in this env's curve and loss: ``(T, B, 3, H, W)``."""
        config = self.batched.config
        if observations.shape[0] != config.max_steps:
            raise ValueError(f"final-loss credit needs whole episodes of {config.max_steps} steps, "
                             f"got {observations.shape[0]}")
        exposure = observations[0, :, 3, 0, 0] if observations.shape[2] == 4 else None  # the target plane
        return final_loss_shares(observations[:, :, :3], actions, config.action_set, config.weights, exposure)

    def state_dict(self) -> dict[str, Any]:
        """The batch's state and the returns of the episodes in progress (to resume training exactly)."""
        return {"batched": self.batched.state_dict(), "returns": self._returns.cpu(), "seed": self._seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batched.load_state_dict(state["batched"])
        self._returns = state["returns"].to(self.batched.device)
        self._seed = state["seed"]

    def current_observations(self) -> torch.Tensor:
        """The observations of the episodes in progress (after :meth:`load_state_dict`)."""
        return self.batched.observations().clone()

    # -- SB3 VecEnv API --------------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        return _numpy(self.reset_tensors())

    def step_async(self, actions: np.ndarray) -> None:
        shape = (self.num_envs, *self.action_space.shape)
        self._actions = check_actions(actions, shape, self.batched.config.action_set.n_actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        step = self.step_tensors(torch.from_numpy(self._actions).to(self.batched.device))
        self._actions = None
        maps = np.ascontiguousarray(_numpy(step.reward_maps))
        for i, info in enumerate(step.infos):
            info["reward_map"] = maps[i]
            if "terminal_observation" in info:
                info["terminal_observation"] = _numpy(info["terminal_observation"])
        return _numpy(step.obs), _numpy(step.rewards).astype(np.float32), step.dones.copy(), step.infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.batched, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.batched, attr_name, value)

    def env_method(self, method_name: str, *args, indices: VecEnvIndices = None, **kwargs) -> list[Any]:
        return [getattr(self.batched, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self._seed = seed
        return [None if seed is None else seed + self.first_index + i for i in range(self.num_envs)]
