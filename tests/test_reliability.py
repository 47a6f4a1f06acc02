"""Wrong results, crashes and silently accepted input that once got through: each now errs clearly or works."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import PixelA2C, PixelPPO
from agents.inference import enhance
from rellie_env.batched import BatchedLowLightEnv
from rellie_env.core import REWARD_MODES
from rellie_env.env import LowLightEnv
from rellie_env.vector import LowLightSB3VecEnv

from .conftest import small_policy

KW = dict(crop_size=32, max_steps=2)


def test_sb3_vec_env_rewards_are_one_per_env_in_every_mode():
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecMonitor

    env = LowLightSB3VecEnv(2, reward_mode="head-delta", seed=0, **KW)
    env.reset()
    _, rewards, _, infos = env.step(np.full((2, 3, 32, 32), 20))
    assert rewards.shape == (2,)
    np.testing.assert_allclose(rewards, [i["reward_map"].sum(0).mean() for i in infos], rtol=1e-5)
    model = PixelA2C(env=VecMonitor(LowLightSB3VecEnv(2, reward_mode="head-delta", seed=0, **KW)), n_steps=2,
                     policy_kwargs=dict(width=8, per_head=True))
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2)
    assert np.isfinite(mean)


@pytest.mark.parametrize("algo", [PixelA2C, PixelPPO])
def test_final_credit_refuses_a_discount(algo):
    env = LowLightSB3VecEnv(2, reward_mode="head-delta", **KW)
    with pytest.raises(ValueError, match="gamma = 0"):
        algo(env=env, n_steps=2, final_credit=True, gamma=1.05, policy_kwargs=dict(width=8, per_head=True))
    extra = dict(batch_size=4) if algo is PixelPPO else {}
    model = algo(env=env, n_steps=2, final_credit=True, policy_kwargs=dict(width=8, per_head=True), **extra)
    assert model.gamma == 0.0  # the default discount under final credit


def test_final_credit_needs_whole_episodes_and_a_tensor_env():
    with pytest.raises(ValueError, match="n_steps = max_steps"):
        PixelA2C(env=LowLightSB3VecEnv(2, reward_mode="head-delta", **KW), n_steps=3, final_credit=True,
                 policy_kwargs=dict(width=8, per_head=True))
    from stable_baselines3.common.env_util import make_vec_env

    with pytest.raises(ValueError, match="steps in torch"):
        PixelA2C(env=make_vec_env(lambda: LowLightEnv(**KW), n_envs=2), n_steps=2, final_credit=True,
                 policy_kwargs=dict(width=8))


def test_a_policy_other_than_the_pixel_policy_is_refused():
    with pytest.raises(ValueError, match="needs PixelActorCriticPolicy"):
        PixelA2C("MlpPolicy", LowLightSB3VecEnv(2, **KW))


@pytest.mark.parametrize("make", [
    lambda: LowLightEnv(**KW),
    lambda: BatchedLowLightEnv(2, **KW),
    lambda: gym.make_vec("LowLight-v0", num_envs=2, **KW),
    lambda: LowLightSB3VecEnv(2, **KW),
])
def test_every_env_refuses_a_step_before_reset(make):
    env = make()
    actions = np.full((3, 32, 32) if isinstance(env, LowLightEnv) else (2, 3, 32, 32), 10)
    with pytest.raises(RuntimeError, match="reset"):
        if isinstance(env, BatchedLowLightEnv):
            env.step(torch.from_numpy(actions))
        elif isinstance(env, LowLightSB3VecEnv):
            env.step(actions)
        else:
            env.step(actions)


@pytest.mark.parametrize("make", [lambda: BatchedLowLightEnv(2, **KW),
                                  lambda: gym.make_vec("LowLight-v0", num_envs=2, **KW)])
def test_vector_envs_refuse_an_image_option(make):
    with pytest.raises(ValueError, match="options=\\{'index'"):
        make().reset(seed=0, options={"image": np.zeros((32, 32, 3))})


@pytest.mark.parametrize("side", [1, 2, 15])
def test_an_image_too_small_is_refused_and_the_env_stays_usable(side):
    env = LowLightEnv(**KW)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="at least 16 x 16"):
        env.reset(options={"image": np.zeros((side, 20, 3))})
    assert env.observation_space.shape == (3, 32, 32)  # the spaces did not move
    obs, *_ = env.step(np.full((3, 32, 32), 20))  # the episode in progress goes on
    assert obs.shape == (3, 32, 32)


def test_a_target_of_another_size_is_refused():
    env = LowLightEnv(**KW)
    with pytest.raises(ValueError, match="target must have the image's shape"):
        env.reset(options={"image": np.zeros((20, 24, 3)), "target": np.zeros((20, 25, 3))})


@pytest.mark.parametrize("kwargs, match", [
    (dict(spatial_weight=-1.0), "spatial weight"),
    (dict(exposure_weight=float("nan")), "exposure weight"),
    (dict(exposure_level=5), "exposure_level"),
    (dict(flip_prob=2), "flip_prob"),
    (dict(max_steps=2.5), "max_steps"),
    (dict(max_steps=0), "max_steps"),
    (dict(crop_size=8), "crop_size"),
    (dict(min_scale=0.0), "min_scale"),
    (dict(bogus=1), "unexpected argument 'bogus'"),
])
def test_bad_env_arguments_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LowLightEnv(**kwargs)


def test_a_grey_photo_stays_grey():
    torch.manual_seed(0)
    policy = small_policy(init_alpha=[1.0, 0.5, 0.0], init_alpha_spread=0.05, action_set={"lead_channel": None})
    grey = np.repeat(np.linspace(0.02, 0.3, 40 * 48, dtype=np.float32).reshape(40, 48, 1), 3, axis=2)
    out = enhance(policy, grey, steps=3)
    assert out.mean() > grey.mean() and np.ptp(out, axis=2).max() == 0
    colour = grey * np.array([1.0, 0.9, 0.8], np.float32)
    assert np.ptp(enhance(policy, colour, steps=3), axis=2).max() > 0.05  # colour photos keep their heads


def test_enhance_refuses_a_tiny_tile_and_a_bad_step_count():
    policy = small_policy()
    image = np.full((40, 40, 3), 0.1, np.float32)
    with pytest.raises(ValueError, match="tile must be an integer of at least"):
        enhance(policy, image, tile=1)
    with pytest.raises(ValueError, match="steps"):
        enhance(policy, image, steps=2.5)


def test_vector_env_ignores_no_option_silently():
    envs = gym.make_vec("LowLight-v0", num_envs=2, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs, _ = envs.reset(seed=0, options={"index": 1})
    assert obs.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("mode", REWARD_MODES)
def test_a_grey_photo_gets_finite_rewards(mode):
    # the grey-world term is a square root, whose gradient at 0 (a grey photo) was NaN in the difference rewards
    env = LowLightEnv(crop_size=None, max_steps=2, reward_mode=mode)
    env.reset(options={"image": np.tile(np.linspace(0, 1, 24, dtype=np.float32), (16, 1))})
    _, reward, _, _, info = env.step(np.full(env.action_space.shape, 20))
    assert np.isfinite(reward) and np.isfinite(info["reward_map"]).all()
