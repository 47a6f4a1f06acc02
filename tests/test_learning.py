"""Short training runs that must lower the held-out non-reference loss of the greedy policy."""
import pytest
import torch

from agents import PixelA2C, PixelPPO
from agents.evaluation import ValidationCrops, greedy_loss
from rellie_env.vector import LowLightSB3VecEnv

# The default recipe of train_sb3.py, on a small network and small crops so that a run takes < 60 s.
RECIPE = dict(n_steps=6, final_credit=True, learning_rate=1e-3, ent_coef=0.01, max_grad_norm=1.0, normalize_advantage=True,
              reward_scale=0.2, alpha_smoothness_coef=20.0, seed=0,
              policy_kwargs=dict(width=16, init_alpha=0.3, init_alpha_spread=0.15, per_head=True, global_color=True))


@pytest.mark.parametrize("algo, episodes, margin", [(PixelA2C, 25, 0.4), (PixelPPO, 12, 0.4)])
def test_short_run_lowers_the_heldout_loss(algo, episodes, margin):
    env = LowLightSB3VecEnv(8, seed=0, crop_size=48, max_steps=6, reward_mode="head-delta", smoothness_weight=0.0)
    extra = dict(batch_size=12, n_epochs=2, gae_lambda=1.0) if algo is PixelPPO else {}
    model = algo(env=env, **RECIPE, **extra)
    heldout = ValidationCrops.of("builtin:test", 8, 64).images  # photos the agent never sees in training
    before = greedy_loss(model.policy, heldout)
    model.learn(episodes * 8 * 6)
    after = greedy_loss(model.policy, heldout)
    assert after < before - margin, (before, after)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
