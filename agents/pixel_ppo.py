"""PixelPPO: SB3's PPO with one agent per pixel, ratio and clipping per pixel."""
from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO

from agents import distributed
from agents.on_policy import PixelOnPolicyMixin


class PixelPPO(PixelOnPolicyMixin, PPO):
    """Proximal policy optimisation where every pixel is an agent.

    The probability ratio is taken per pixel (``exp(log pi - log pi_old)`` with log-probabilities summed over
    the three heads of that pixel only, or per head with a ``per_head`` policy; the ratio of a whole image,
    thousands of log-probabilities summed, overflows) and clipped per pixel; losses are averaged over pixels.
    ``batch_size`` counts images.

    :param policy: the policy class (``PixelActorCriticPolicy``).
    :param env: a ``LowLightSB3VecEnv`` (fast path, any device) or any VecEnv / env of ``LowLight-v0``.
    :param reward_scale: factor on the reward maps before they are stored.
    :param alpha_smoothness_coef: weight of the smoothness of the policy's expected alpha maps.
    :param bf16: run the network under bfloat16 autocast (losses stay float32).
    :param final_credit: reward each action with its share of the episode's final loss (the env's
        ``final_loss_credit``) instead of its reward maps; the discount is then 0.
    :param kwargs: SB3's ``PPO`` arguments (``learning_rate``, ``n_steps``, ``batch_size``, ``n_epochs``,
        ``gamma``, ``gae_lambda``, ``clip_range``, ...); ``defaults`` holds this class's where they differ
        from SB3's.
    """

    defaults = dict(learning_rate=5e-4, n_steps=10, batch_size=16, n_epochs=4, gamma=0.95, gae_lambda=0.95)

    def train(self) -> None:
        """``n_epochs`` passes over the rollout in minibatches of ``batch_size`` images."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "entropy_loss",
                                                          "alpha_smoothness", "clip_fraction", "approx_kl")}
        continue_training = True
        for _ in range(self.n_epochs):
            for data in self.rollout_buffer.get(self.batch_size):
                with self._autocast():
                    values, log_prob, entropy, dist = self.policy.evaluate_pixels(data.observations, data.actions)
                advantages = self._normalized(data.advantages)
                log_ratio = log_prob - data.old_log_prob
                ratio = torch.exp(log_ratio)
                clipped = torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
                policy_loss = -clipped.sum(1).mean()  # summed over (per-head) ratios, averaged over pixels
                if clip_range_vf is not None:
                    values = data.old_values + (values - data.old_values).clamp(-clip_range_vf, clip_range_vf)
                loss, terms = self._total_loss(policy_loss, values, data.returns, entropy, dist)
                with torch.no_grad():  # over all ranks, so that they stop together
                    approx_kl = distributed.global_mean_std(((ratio - 1) - log_ratio).flatten())[0].item()
                    stats["clip_fraction"].append(((ratio - 1).abs() > clip_range).float().mean().item())
                stats["approx_kl"].append(approx_kl)
                for key, value in terms.items():
                    stats[key].append(value)
                if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                    continue_training = False
                    break
                self._gradient_step(loss)
            self._n_updates += 1
            if not continue_training:
                break

        self._record_explained_variance()
        for key, values in stats.items():
            self.logger.record(f"train/{'policy_gradient_loss' if key == 'policy_loss' else key}", np.mean(values))
        self.logger.record("train/clip_range", clip_range)
