"""What PixelA2C and PixelPPO share: rollouts that keep one reward per pixel, and the smoothness penalty."""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from agents import distributed
from agents.buffers import PixelRolloutBuffer
from agents.distributions import PixelCategoricalDistribution
from agents.policies import PixelActorCriticPolicy
from rellie_env.losses import LOSS_TERMS, smoothness_loss
from rellie_env.vector import TensorVecEnv

FINAL_KEYS = ("image_loss", *(f"loss/{term}" for term in LOSS_TERMS), "psnr", "ssim")


class PixelOnPolicyMixin:
    """Rollout collection for pixel-wise on-policy algorithms (mixed into SB3's ``A2C`` / ``PPO``).

    With an env that follows :class:`~rellie_env.vector.TensorVecEnv` (``LowLightSB3VecEnv``) a rollout stays
    in torch on the env's device; with any other ``VecEnv`` (e.g. ``DummyVecEnv`` of ``LowLight-v0``) the
    reward map is read from ``info["reward_map"]``, falling back to the scalar reward at every pixel for an
    env without one. ``reward_scale`` multiplies the reward maps before they are stored. With
    ``final_credit`` the rewards are instead relabelled, once the rollout's episode is over, by the env's
    ``final_loss_credit``: each action's share of the episode's final loss. It needs a ``TensorVecEnv``,
    rollouts of exactly one episode (``n_steps`` = the env's ``max_steps``) and gamma 0, since each reward
    already holds what its action did to the outcome.
    """

    policy_aliases = {"PixelActorCriticPolicy": PixelActorCriticPolicy}
    # The algorithm's own defaults (SB3's arguments), where they differ from SB3's: each subclass's data.
    defaults: dict[str, Any] = {}

    def __init__(
        self,
        policy: type[PixelActorCriticPolicy] | str = PixelActorCriticPolicy,
        env: Any = None,
        reward_scale: float = 1.0,
        alpha_smoothness_coef: float = 0.0,
        bf16: bool = False,
        final_credit: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(policy, str) and policy != "PixelActorCriticPolicy" or not isinstance(policy, str) and not (
                isinstance(policy, type) and issubclass(policy, PixelActorCriticPolicy)):
            raise ValueError(f"{type(self).__name__} needs PixelActorCriticPolicy (or a subclass), the fully "
                             f"convolutional policy of action maps; got {policy!r}")
        if not (reward_scale > 0 and np.isfinite(reward_scale)):
            raise ValueError(f"reward_scale must be positive, got {reward_scale}")
        if not (alpha_smoothness_coef >= 0 and np.isfinite(alpha_smoothness_coef)):
            raise ValueError(f"alpha_smoothness_coef must be non-negative, got {alpha_smoothness_coef}")
        settings = {**self.defaults, **{k: v for k, v in kwargs.items() if v is not None}}
        if final_credit:
            if kwargs.get("gamma") not in (None, 0.0):
                raise ValueError(f"final_credit needs gamma = 0 (each reward already holds its action's whole "
                                 f"effect), got gamma = {kwargs['gamma']}")
            settings["gamma"] = 0.0
        settings.setdefault("rollout_buffer_class", PixelRolloutBuffer)
        self.reward_scale = reward_scale
        self.alpha_smoothness_coef = alpha_smoothness_coef
        self.bf16 = bf16
        self.final_credit = final_credit
        self.final_info_buffer: deque[dict] = deque(maxlen=100)
        super().__init__(policy, env, **settings)  # type: ignore[call-arg]

    def _setup_model(self) -> None:
        super()._setup_model()  # type: ignore[misc]
        self._pixel_setup_model()

    def learn(self, total_timesteps: int, *args, tb_log_name: str | None = None, **kwargs):
        """SB3's ``learn``; TensorBoard runs are named after the algorithm (``PixelA2C_1``, ``PixelPPO_1``)."""
        return super().learn(total_timesteps, *args, tb_log_name=tb_log_name or type(self).__name__, **kwargs)  # type: ignore[misc]

    def _autocast(self):
        """bfloat16 autocast of the network when ``bf16`` (AMX/AVX-512 CPUs and recent GPUs run it 2-3x
        faster); logits, values and every loss stay float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _check_final_credit(self, env: VecEnv | None) -> None:
        """``final_credit`` needs gamma 0, a :class:`TensorVecEnv` and rollouts of one whole episode."""
        if not self.final_credit:
            return
        if self.gamma != 0.0:
            raise ValueError(f"final_credit needs gamma = 0 (each reward already holds its action's whole effect), "
                             f"got gamma = {self.gamma}")
        if env is None:
            return
        if not isinstance(env, TensorVecEnv):
            raise ValueError("final_credit needs an env that steps in torch (rellie_env.vector.LowLightSB3VecEnv)")
        if self.n_steps != env.max_steps:
            raise ValueError(f"final_credit needs rollouts of exactly one episode: n_steps = max_steps "
                             f"({env.max_steps}), got n_steps = {self.n_steps}")

    def _env_step(self, env: VecEnv, actions: torch.Tensor):
        """Step ``env``: ``(next_obs, reward maps (None under final_credit), dones, infos)`` as tensors."""
        if isinstance(env, TensorVecEnv):
            step = env.step_tensors(actions.to(env.device), reward_maps=not self.final_credit)
            maps = None if step.reward_maps is None else step.reward_maps.to(self.device)
            return step.obs.to(self.device), maps, step.dones, step.infos
        obs, rewards, dones, infos = env.step(actions.cpu().numpy().reshape(env.num_envs, *self.action_space.shape))
        h, w = self.observation_space.shape[1:]
        maps = np.stack([info.get("reward_map", np.full((h, w), r, np.float32)) for info, r in zip(infos, rewards)])
        return obs_as_tensor(obs, self.device), torch.as_tensor(maps, device=self.device), dones, infos

    def _reward_heads(self, reward_map: torch.Tensor) -> torch.Tensor:
        """Reward maps ``(B, H, W)`` or per head ``(B, heads, H, W)`` as ``(B, value_heads, H, W)``: per-head
        rewards are summed for a policy with one value per pixel."""
        if reward_map.dim() == 3:
            reward_map = reward_map.unsqueeze(1)
        if reward_map.shape[1] == self.policy.value_heads:
            return reward_map
        if self.policy.value_heads == 1:
            return reward_map.sum(1, keepdim=True)
        raise ValueError("a policy with per_head=True needs one reward map per head: reward_mode='head-delta'")

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: PixelRolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """Fill ``rollout_buffer`` with ``n_rollout_steps`` steps of every env (maps per pixel)."""
        self._check_final_credit(env)
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        callback.on_rollout_start()
        obs = obs_as_tensor(self._last_obs, self.device) if isinstance(self._last_obs, np.ndarray) else self._last_obs
        starts = torch.as_tensor(self._last_episode_starts, dtype=torch.float32, device=self.device)
        for _ in range(n_rollout_steps):
            with torch.no_grad(), self._autocast():
                actions, values, log_probs = self.policy.act_pixels(obs, generators=self.action_generators)
            new_obs, reward_map, dones, infos = self._env_step(env, actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            self.final_info_buffer.extend({k: i[k] for k in FINAL_KEYS if k in i} for i in infos if "episode" in i)
            reward = torch.zeros_like(values) if reward_map is None else self._reward_heads(reward_map) * self.reward_scale
            rollout_buffer.add(obs, actions, reward, starts, values, log_probs)
            obs = new_obs
            starts = torch.as_tensor(dones, dtype=torch.float32, device=self.device)
        if self.final_credit:
            self._credit_final_loss(env, rollout_buffer, infos)
        with torch.no_grad(), self._autocast():
            last_values = self.policy.value_map(obs)
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=starts)
        self._last_obs, self._last_episode_starts = obs, dones
        self.logger.record("rollout/step_reward_mean", float(rollout_buffer.rewards.sum(2).mean()) / self.reward_scale)
        for key in FINAL_KEYS:
            values = [i[key] for i in self.final_info_buffer if key in i]
            if values:
                self.logger.record(f"rollout/final_{key.replace('loss/', 'loss_')}", float(np.mean(values)))
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _credit_final_loss(self, env: TensorVecEnv, buffer: PixelRolloutBuffer, infos: list[dict]) -> None:
        """Relabel the stored rewards: each action's share of its episode's final loss (``final_credit``); the
        episode records in the last step's ``infos`` get the relabelled returns."""
        if not bool(buffer.episode_starts[0].all()):
            raise ValueError(f"final_credit needs rollouts that start with their episodes (n_steps = max_steps = "
                             f"{env.max_steps})")
        shares = env.final_loss_credit(buffer.observations, buffer.actions)
        buffer.rewards = self._reward_heads(shares.flatten(0, 1)).view_as(buffer.rewards) * self.reward_scale
        returns = shares.sum(2).mean((2, 3)).sum(0).tolist()  # per episode: summed over heads and steps
        for info, value in zip(infos, returns):
            if "episode" in info:
                info["episode"]["r"] = value

    def _normalized(self, advantages: torch.Tensor) -> torch.Tensor:
        """Advantages normalised over every pixel (and head) of the batch, of all ranks of a distributed run,
        when ``normalize_advantage``."""
        if not self.normalize_advantage or advantages.numel() * distributed.world_size() < 2:
            return advantages
        mean, std = distributed.global_mean_std(advantages)
        return (advantages - mean) / (std + 1e-8)

    def _gradient_step(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, gradients averaged over the ranks of a distributed run, clipped at ``max_grad_norm``, one
        optimiser step; returns the gradient norm before clipping."""
        self.policy.optimizer.zero_grad()
        loss.backward()
        distributed.average_gradients(self.policy.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()
        return grad_norm

    def _total_loss(
        self, policy_loss: torch.Tensor, values: torch.Tensor, returns: torch.Tensor, entropy: torch.Tensor,
        dist: PixelCategoricalDistribution,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``policy_loss + vf_coef * 0.5 (R - V)^2 - ent_coef * H + alpha_smoothness_coef * L_TV(E[alpha])``,
        every term averaged over pixels; also the terms, for logging."""
        value_loss = 0.5 * (returns - values).pow(2).mean()
        entropy_loss = -entropy.mean()
        smoothness = self._alpha_smoothness(dist)
        loss = (
            policy_loss
            + self.ent_coef * entropy_loss
            + self.vf_coef * value_loss
            + self.alpha_smoothness_coef * smoothness
        )
        terms = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                 "entropy_loss": entropy_loss.item(), "alpha_smoothness": smoothness.item()}
        return loss, terms

    def _record_explained_variance(self) -> None:
        buffer = self.rollout_buffer
        ev = explained_variance(buffer.values.flatten().cpu().numpy(), buffer.returns.flatten().cpu().numpy())
        self.logger.record("train/explained_variance", ev)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _alpha_smoothness(self, dist: PixelCategoricalDistribution) -> torch.Tensor:
        """Smoothness (L_TV) of the policy's expected alpha maps: differentiable, unlike the sampled maps'."""
        if self.alpha_smoothness_coef == 0.0:
            return torch.zeros((), device=self.device)
        return smoothness_loss(dist.expected(self.policy.alpha_values)).mean()

    def _pixel_setup_model(self) -> None:
        """After SB3's ``_setup_model``: check the rollout buffer keeps maps, one per value head of the policy."""
        if not isinstance(self.rollout_buffer, PixelRolloutBuffer):
            raise TypeError("pixel-wise algorithms need rollout_buffer_class=PixelRolloutBuffer")
        self._check_final_credit(self.env)
        self.rollout_buffer.value_heads = self.policy.value_heads
        self.rollout_buffer.reset()
        distributed.broadcast_parameters(self.policy)
        # One random stream per image for the sampled actions, seeded by the image's place in the whole batch
        # of all ranks: samples do not depend on how the batch is split over processes.
        base = self.seed if self.seed is not None else int(torch.randint(2**31 - 1, ()))
        first = distributed.rank() * self.n_envs
        self.action_generators = [torch.Generator(self.device).manual_seed(base * 1_000_003 + first + i)
                                  for i in range(self.n_envs)]
