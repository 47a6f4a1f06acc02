"""PixelA2C: SB3's A2C with one agent per pixel (PixelRL / ReLLIE)."""
from __future__ import annotations

from typing import Any

import torch
from stable_baselines3 import A2C

from agents.buffers import PixelRolloutBuffer
from agents.on_policy import PixelOnPolicyMixin
from agents.policies import PixelActorCriticPolicy


class PixelA2C(PixelOnPolicyMixin, A2C):
    """Synchronous advantage actor-critic where every pixel is an agent.

    Returns, advantages and losses are per pixel: for each pixel of each image,
    ``-log pi(a) * A - ent_coef * H + vf_coef * 0.5 * (R - V)^2 [+ alpha_smoothness_coef * L_TV(E[alpha])]``,
    averaged over pixels, where ``log pi(a)`` and ``H`` are summed over the three colour heads (with a
    ``per_head`` policy each head's ``log pi(a_h) * A_h`` is summed instead, each head with its own advantage).
    The defaults are the released ReLLIE settings: one update per 10-step episode (``n_steps=10``),
    Monte-Carlo returns (``gae_lambda=1``), gamma 1.05, Adam with learning rate 5e-4, entropy 0.01, value
    coefficient 0.5 on ``(R - V)^2 / 2``, no gradient clipping; use 32 envs of 70x70 crops for batch 32.

    :param policy: the policy class (``PixelActorCriticPolicy``).
    :param env: a ``LowLightSB3VecEnv`` (fast path, any device) or any VecEnv / env of ``LowLight-v0``.
    :param reward_scale: factor on the reward maps before they are stored (returns scale with it).
    :param bf16: run the network under bfloat16 autocast (losses stay float32).
    :param gamma: discount (1.05 as released; 0, and only 0, with ``final_credit``).
    :param final_credit: reward each action with its share of the episode's final loss (the env's
        ``final_loss_credit``, :class:`rellie_env.vector.TensorVecEnv`) instead of its reward maps.
    :param alpha_smoothness_coef: weight of the smoothness of the policy's expected alpha maps, a
        differentiable stand-in for the environment's smoothness term on sampled maps.
    :param normalize_advantage: normalise advantages over all pixels of the batch.
    :param kwargs: other arguments of SB3's ``A2C``.
    """

    policy_aliases = {"PixelActorCriticPolicy": PixelActorCriticPolicy}

    def __init__(
        self,
        policy: type[PixelActorCriticPolicy] | str = PixelActorCriticPolicy,
        env: Any = None,
        learning_rate: float = 5e-4,
        n_steps: int = 10,
        gamma: float | None = None,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = float("inf"),
        normalize_advantage: bool = False,
        reward_scale: float = 1.0,
        alpha_smoothness_coef: float = 0.0,
        bf16: bool = False,
        final_credit: bool = False,
        use_rms_prop: bool = False,
        **kwargs: Any,
    ) -> None:
        gamma = self._pixel_setup(policy, reward_scale, alpha_smoothness_coef, bf16, final_credit, gamma, 1.05)
        kwargs.setdefault("rollout_buffer_class", PixelRolloutBuffer)
        super().__init__(
            policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma, gae_lambda=gae_lambda,
            ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm, use_rms_prop=use_rms_prop,
            normalize_advantage=normalize_advantage, **kwargs,
        )

    def train(self) -> None:
        """One gradient step on the whole rollout (all steps, all envs, all pixels)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for data in self.rollout_buffer.get(batch_size=None):
            with self._autocast():
                values, log_prob, entropy, dist = self.policy.evaluate_pixels(data.observations, data.actions)
            advantages = self._normalized(data.advantages)
            policy_loss = -(advantages * log_prob).sum(1).mean()  # summed over heads, averaged over pixels
            loss, terms = self._total_loss(policy_loss, values, data.returns, entropy, dist)
            self.policy.optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

        self._n_updates += 1
        self._record_explained_variance()
        for key, value in terms.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/grad_norm", grad_norm.item())
