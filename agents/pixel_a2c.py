"""PixelA2C: SB3's A2C with one agent per pixel (PixelRL / ReLLIE)."""
from __future__ import annotations

from stable_baselines3 import A2C

from agents.on_policy import PixelOnPolicyMixin


class PixelA2C(PixelOnPolicyMixin, A2C):
    """Synchronous advantage actor-critic where every pixel is an agent.

    Returns, advantages and losses are per pixel: for each pixel of each image,
    ``-log pi(a) * A - ent_coef * H + vf_coef * 0.5 * (R - V)^2 [+ alpha_smoothness_coef * L_TV(E[alpha])]``,
    averaged over pixels, where ``log pi(a)`` and ``H`` are summed over the three colour heads (with a
    ``per_head`` policy each head's ``log pi(a_h) * A_h`` is summed instead, each head with its own advantage).
    The defaults are the released ReLLIE settings: one update per 10-step episode (``n_steps=10``),
    Monte-Carlo returns (``gae_lambda=1``), gamma 1.05, Adam with learning rate 5e-4, entropy 0.01, value
    coefficient 0.5 on ``(R - V)^2 / 2``, no gradient clipping, no advantage normalisation; use 32 envs of
    70x70 crops for batch 32.

    :param policy: the policy class (``PixelActorCriticPolicy``).
    :param env: a ``LowLightSB3VecEnv`` (fast path, any device) or any VecEnv / env of ``LowLight-v0``.
    :param reward_scale: factor on the reward maps before they are stored (returns scale with it).
    :param alpha_smoothness_coef: weight of the smoothness of the policy's expected alpha maps, a
        differentiable stand-in for the environment's smoothness term on sampled maps.
    :param bf16: run the network under bfloat16 autocast (losses stay float32).
    :param final_credit: reward each action with its share of the episode's final loss (the env's
        ``final_loss_credit``, :class:`rellie_env.vector.TensorVecEnv`) instead of its reward maps; the
        discount is then 0 (another ``gamma`` is refused).
    :param kwargs: SB3's ``A2C`` arguments (``learning_rate``, ``n_steps``, ``gamma``, ``gae_lambda``,
        ``ent_coef``, ``vf_coef``, ``max_grad_norm``, ``normalize_advantage``, ...); ``defaults`` holds the
        released values where they differ from SB3's.
    """

    defaults = dict(learning_rate=5e-4, n_steps=10, gamma=1.05, gae_lambda=1.0, ent_coef=0.01, vf_coef=0.5,
                    max_grad_norm=float("inf"), normalize_advantage=False, use_rms_prop=False)

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
            grad_norm = self._gradient_step(loss)

        self._n_updates += 1
        self._record_explained_variance()
        for key, value in terms.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/grad_norm", grad_norm.item())
