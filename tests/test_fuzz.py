"""Property-based tests: whatever the input, a ValueError that says what is wrong, or a valid result; a failed
call leaves the environment usable; the batched environment equals single ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.inference import enhance
from rellie_env.batched import BatchedLowLightEnv
from rellie_env.core import REWARD_MODES
from rellie_env.env import LowLightEnv

from .conftest import small_policy

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def images(draw, max_side: int = 40):
    """Arrays that may or may not be images: any shape of 2-4 dimensions, many dtypes, any values."""
    ndim = draw(st.sampled_from([2, 3, 3, 3, 4]))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    shape = (h, w) if ndim == 2 else (h, w, draw(st.sampled_from([1, 2, 3, 3, 4]))) if ndim == 3 else (1, h, w, 3)
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, bool]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype is bool:
        a = rng.random(shape) > 0.5
    elif np.issubdtype(dtype, np.integer):
        a = rng.integers(0, np.iinfo(dtype).max if dtype != np.int32 else 300, shape).astype(dtype)
    else:
        a = (rng.random(shape) * draw(st.sampled_from([1.0, 1.0, 2.0, -1.0]))).astype(dtype)
        if a.size and draw(st.booleans()):
            a.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return a


def valid_observation(obs: np.ndarray, env: LowLightEnv) -> None:
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert np.isfinite(obs).all() and obs.min() >= 0.0 and obs.max() <= 1.0


@FAST
@given(image=images(), actions_seed=st.integers(0, 1000), mode=st.sampled_from(REWARD_MODES))
def test_env_reset_with_any_array_errs_clearly_or_runs(image, actions_seed, mode):
    env = LowLightEnv(crop_size=32, max_steps=2, reward_mode=mode)
    env.reset(seed=0)
    try:
        obs, _ = env.reset(options={"image": image})
    except ValueError as exc:
        assert str(exc)  # a message
        obs, _ = env.reset(seed=1)  # the env is still usable
    valid_observation(obs, env)
    actions = np.random.default_rng(actions_seed).integers(0, 27, env.action_space.shape)
    obs, reward, terminated, truncated, info = env.step(actions)
    valid_observation(obs, env)
    assert np.isfinite(reward) and not terminated and info["reward_map"].shape[-2:] == obs.shape[1:]


@FAST
@given(shape=st.tuples(st.integers(1, 4), st.integers(0, 40), st.integers(0, 40)),
       low=st.integers(-3, 0), high=st.integers(1, 30), dtype=st.sampled_from([np.int64, np.uint8, np.float32]))
def test_env_step_with_any_action_map_errs_clearly_or_runs(shape, low, high, dtype):
    env = LowLightEnv(crop_size=32, max_steps=3)
    obs, _ = env.reset(seed=0)
    actions = np.random.default_rng(0).integers(low, high, shape).astype(dtype)
    try:
        obs, reward, *_ = env.step(actions)
        assert np.isfinite(reward)
    except ValueError as exc:
        assert "action" in str(exc)
    obs, reward, *_ = env.step(np.full(env.action_space.shape, 10))  # still usable
    valid_observation(obs, env)


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 4), seed=st.integers(0, 2**20), mode=st.sampled_from(REWARD_MODES),
       crop=st.sampled_from([16, 17, 31, 40]), steps=st.integers(1, 3))
def test_batched_env_equals_single_envs(b, seed, mode, crop, steps):
    kw = dict(crop_size=crop, max_steps=steps, reward_mode=mode)
    seeds = [seed + 7 * i for i in range(b)]
    batched = BatchedLowLightEnv(b, **kw)
    singles = [LowLightEnv(**kw) for _ in range(b)]
    obs_b = batched.reset(seed=seeds)
    np.testing.assert_array_equal(obs_b.numpy(), np.stack([e.reset(seed=s)[0] for e, s in zip(singles, seeds)]))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        actions = rng.integers(0, 27, (b, 3, crop, crop))
        obs_b, maps, _, info = batched.step(torch.from_numpy(actions))
        out = [e.step(a) for e, a in zip(singles, actions)]
        np.testing.assert_allclose(obs_b.numpy(), np.stack([o[0] for o in out]), atol=1e-6)
        np.testing.assert_allclose(info["reward"].numpy(), [o[1] for o in out], rtol=1e-4, atol=1e-5)
        assert np.isfinite(maps.numpy()).all()


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return small_policy(init_alpha=0.4)


@FAST
@given(image=images(max_side=48), steps=st.integers(0, 3), fast=st.booleans())
def test_enhance_errs_clearly_or_gives_an_image_of_the_same_size(policy, image, steps, fast):
    try:
        out = enhance(policy, image, steps=steps, fast=fast)
    except ValueError as exc:
        assert str(exc)
        return
    assert out.dtype == np.float32 and out.shape == (*image.shape[:2], 3)
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
