"""The batched torch environment and its Gymnasium / SB3 adapters match B single environments."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from rellie_env.batched import BatchedLowLightEnv
from rellie_env.env import LowLightEnv
from rellie_env.vector import LowLightSB3VecEnv, LowLightVectorEnv

KW = dict(crop_size=32, max_steps=3, fidelity=True)


@pytest.mark.parametrize("mode", ["paper", "delta", "pixel", "head-delta"])
def test_batched_equals_single_envs(mode):
    b, seeds = 4, [11, 12, 13, 14]
    singles = [LowLightEnv(reward_mode=mode, **KW) for _ in range(b)]
    batched = BatchedLowLightEnv(b, reward_mode=mode, **KW)
    obs_b = batched.reset(seed=seeds)
    obs_s = [e.reset(seed=s)[0] for e, s in zip(singles, seeds)]
    np.testing.assert_array_equal(obs_b.numpy(), np.stack(obs_s))
    rng = np.random.default_rng(0)
    for _ in range(3):
        actions = rng.integers(0, 27, (b, 3, 32, 32))
        obs_b, maps, trunc, info = batched.step(torch.from_numpy(actions))
        out = [e.step(a) for e, a in zip(singles, actions)]
        np.testing.assert_allclose(obs_b.numpy(), np.stack([o[0] for o in out]), atol=1e-6)
        np.testing.assert_allclose(maps.numpy(), np.stack([o[4]["reward_map"] for o in out]), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(info["reward"].numpy(), [o[1] for o in out], rtol=1e-5)
        assert list(trunc) == [o[3] for o in out]
    np.testing.assert_allclose(info["psnr"].numpy(), [o[4]["psnr"] for o in out], rtol=1e-6)


def test_int_seed_means_seed_plus_index():
    batched = BatchedLowLightEnv(3, **KW)
    obs = batched.reset(seed=7)
    single = LowLightEnv(**KW)
    np.testing.assert_array_equal(obs[2].numpy(), single.reset(seed=9)[0])


def test_wrong_action_shape_is_a_clear_error():
    batched = BatchedLowLightEnv(2, **KW)
    batched.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        batched.step(torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        batched.step(torch.zeros(2, 3, 32, 32))


def test_make_vec_uses_the_batched_env_and_autoresets_same_step():
    envs = gym.make_vec("LowLight-v0", num_envs=3, **KW)
    assert isinstance(envs.unwrapped, LowLightVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 3, 32, 32) and envs.single_action_space.shape == (3, 32, 32)
    envs.action_space.seed(0)
    for t in range(3):
        obs, rew, term, trunc, info = envs.step(envs.action_space.sample())
        assert rew.shape == (3,) and not term.any()
        np.testing.assert_allclose(info["reward_map"].mean((1, 2)) if t < 2 else
                                   info["final_info"]["reward_map"].mean((1, 2)), rew, rtol=1e-5)
    assert trunc.all() and info["_final_obs"].all()
    final = np.stack(info["final_obs"])
    assert not np.allclose(final, obs)  # the returned obs are the new episodes' first images
    assert np.isfinite(info["final_info"]["psnr"]).all()
    with pytest.raises(ValueError, match=r"\[0, 27\)"):
        envs.step(np.full(envs.action_space.shape, 30))


def test_sb3_vec_env():
    venv = LowLightSB3VecEnv(2, seed=3, **KW)
    obs = venv.reset()
    single = LowLightEnv(**KW)
    np.testing.assert_array_equal(obs[1], single.reset(seed=4)[0])
    actions = np.full((2, 3, 32, 32), 20)
    for _ in range(3):
        obs, rewards, dones, infos = venv.step(actions)
        s_obs, s_r, *_ = single.step(actions[1])
        assert rewards[1] == pytest.approx(s_r, rel=1e-5)
    assert dones.all()
    np.testing.assert_allclose(infos[1]["terminal_observation"], s_obs, atol=1e-6)
    assert infos[0]["episode"]["l"] == 3 and "reward_map" in infos[0]
    assert infos[0]["TimeLimit.truncated"]
