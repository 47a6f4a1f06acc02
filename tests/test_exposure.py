"""A target brightness E per episode (``exposure_range``): in the observation, in the reward, seeded, saved with
the policy, and followed by a trained model."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from agents import PixelA2C, load_policy, save_weights
from agents.inference import enhance
from rellie_env.batched import BatchedLowLightEnv
from rellie_env.env import LowLightEnv
from rellie_env.images import builtin_images
from rellie_env.vector import LowLightSB3VecEnv

from .conftest import small_policy

KW = dict(crop_size=32, max_steps=2, exposure_range=(0.3, 0.7))


def test_the_target_is_a_fourth_observation_plane():
    env = LowLightEnv(**KW)
    assert env.observation_space.shape == (4, 32, 32) and env.action_space.shape == (3, 32, 32)
    obs, info = env.reset(seed=0, options={"exposure": 0.45})
    assert info["exposure"] == 0.45 and np.all(obs[3] == np.float32(0.45))
    obs, *_ = env.step(np.full((3, 32, 32), 20))
    assert np.all(obs[3] == np.float32(0.45)) and obs[:3].mean() > 0
    with pytest.raises(ValueError, match="exposure_range"):
        env.reset(options={"exposure": 0.9})
    with pytest.raises(ValueError, match="exposure_range"):
        LowLightEnv(crop_size=32).reset(options={"exposure": 0.5})  # no range, no E to set
    assert LowLightEnv(crop_size=32).observation_space.shape == (3, 32, 32)  # as released without a range


@pytest.mark.parametrize("terms", [dict(), dict(exposure_weight=0.0, statistics_weight=10.0)])
def test_the_target_sets_the_reward(terms):
    env = LowLightEnv(reward_mode="delta", **KW, **terms)
    actions = np.full((3, 32, 32), 20)
    results = {}
    for e in (0.3, 0.7):
        env.reset(seed=3, options={"index": 0, "exposure": e})
        _, reward, *_, info = env.step(actions)
        results[e] = (reward, info)
    (low_r, low_info), (high_r, high_info) = results[0.3], results[0.7]
    assert low_r != high_r
    if not terms:  # the exposure term measures the patch means against this episode's E
        obs = env.reset(seed=3, options={"index": 0, "exposure": 0.7})[0]
        brighter = env.step(actions)[0][:3]
        patches = brighter.mean(0).reshape(2, 16, 2, 16).mean((1, 3))
        assert results[0.7][1]["loss/exposure"] == pytest.approx(float(((patches - 0.7) ** 2).mean()), rel=1e-5)
        assert obs.shape[0] == 4
    else:
        assert low_info["loss/statistics"] != high_info["loss/statistics"]


def test_the_same_seed_draws_the_same_targets_in_single_and_batched_envs():
    def draws(seed):
        env = LowLightEnv(**KW)
        return [env.reset(seed=seed if k == 0 else None)[1]["exposure"] for k in range(4)]

    assert draws(5) == draws(5) and draws(5) != draws(6)
    batched = BatchedLowLightEnv(3, **KW)
    obs = batched.reset(seed=[5, 6, 7])
    singles = [LowLightEnv(**KW).reset(seed=s)[0] for s in (5, 6, 7)]
    np.testing.assert_array_equal(obs.numpy(), np.stack(singles))
    obs = batched.reset(options={"exposure": [0.3, 0.5, 0.7]})
    assert obs[:, 3, 0, 0].tolist() == pytest.approx([0.3, 0.5, 0.7])


def test_a_conditioned_policy_round_trips_and_refuses_targets_outside_its_range(tmp_path):
    env = LowLightSB3VecEnv(2, **KW)
    model = PixelA2C(env=env, n_steps=2, policy_kwargs=dict(width=8, exposure=0.5, exposure_range=(0.3, 0.7)), seed=0)
    model.learn(4)
    loaded = load_policy(save_weights(model.policy, tmp_path / "p.pt"))
    assert loaded.exposure_range == (0.3, 0.7) and loaded.exposure == 0.5
    photo = np.full((40, 40, 3), 0.1, np.float32)
    np.testing.assert_array_equal(enhance(loaded, photo, steps=2, exposure=0.6),
                                  enhance(model.policy, photo, steps=2, exposure=0.6))
    with pytest.raises(ValueError, match=r"\[0.3, 0.7\]"):
        enhance(loaded, photo, exposure=0.9)


def test_a_policy_of_one_target_warns_once_when_asked_for_another():
    policy = small_policy(exposure=0.344)
    photo = np.full((40, 40, 3), 0.1, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enhance(policy, photo, steps=3, exposure=0.6)
    assert len([w for w in caught if "E = 0.344" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enhance(policy, photo, steps=1, exposure=0.344)  # its own E: no warning


@pytest.mark.slow
def test_a_small_trained_model_brightens_with_the_target():
    # ~80 batches: the target's effect is learnt after the overall brightening (which takes ~30)
    torch.manual_seed(0)
    env = LowLightSB3VecEnv(8, seed=0, crop_size=48, max_steps=6, reward_mode="head-delta", exposure_range=(0.2, 0.5),
                            exposure_weight=0.0, color_weight=0.0, spatial_weight=0.0, smoothness_weight=0.0,
                            statistics_weight=10.0, fit_scale=1.5)
    model = PixelA2C(env=env, n_steps=6, final_credit=True, learning_rate=1e-3, max_grad_norm=1.0,
                     normalize_advantage=True, reward_scale=0.2, alpha_smoothness_coef=5.0, seed=0,
                     policy_kwargs=dict(width=16, init_alpha=0.3, init_alpha_spread=0.5, per_head=True, global_color=True,
                                        global_exposure=True, deterministic_action="mean", exposure=0.35,
                                        exposure_range=(0.2, 0.5)))
    model.learn(80 * 8 * 6)
    for photo in builtin_images("test").images:
        brightness = [enhance(model.policy, photo[:200, :200], steps=6, exposure=e).mean() for e in (0.2, 0.35, 0.5)]
        assert brightness[0] < brightness[1] < brightness[2], brightness
        assert brightness[2] - brightness[0] > 0.03, brightness
