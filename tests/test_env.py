"""LowLight-v0: API checks, seeding, fidelity to the released code, reward modes, bad input."""
import re
import subprocess
import sys
import textwrap
import warnings

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch

import rellie_env
from rellie_env.env import LowLightEnv
from rellie_env.images import BUILTIN_TEST, BUILTIN_TRAIN, Augmentation, builtin_images, to_float_rgb

from .conftest import reference_file


def small_env(**kwargs) -> LowLightEnv:
    kwargs.setdefault("crop_size", 32)
    return LowLightEnv(**kwargs)


def test_gymnasium_and_sb3_check_env():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(gym.make("LowLight-v0", crop_size=32).unwrapped)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 warns that a float image / multi-dim nvec needs its wrappers
        sb3_check_env(small_env(), warn=True)


def test_make_by_module_path_without_prior_import():
    code = "import gymnasium as gym; e = gym.make('rellie_env:LowLight-v0', crop_size=32); print(e.reset(seed=1)[0].shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(3, 32, 32)"


def test_spaces_and_fresh_observations():
    env = small_env(max_steps=3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (3, 32, 32) and obs.dtype == np.float32
    assert env.action_space.nvec.shape == (3, 32, 32) and (env.action_space.nvec == 27).all()
    obs2, *_ = env.step(np.full((3, 32, 32), 26))
    assert obs2 is not obs and not np.shares_memory(obs, obs2)
    obs2[:] = 0  # the caller owns the array: the environment's state must not change
    obs3, *_ = env.step(np.full((3, 32, 32), 6))
    assert obs3.mean() > 0.05


def test_seeding_is_deterministic():
    def rollout(seed):
        env = small_env(max_steps=4)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        out = [obs]
        for _ in range(4):
            obs, r, *_ = env.step(env.action_space.sample())
            out += [obs, r]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_episode_truncates_at_max_steps_with_metrics_when_asked():
    env = small_env(max_steps=3, fidelity=True)
    env.reset(seed=0)
    ends = [env.step(np.full((3, 32, 32), 20))[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    env.reset(seed=0)
    for _ in range(3):
        *_, info = env.step(np.full((3, 32, 32), 20))
    assert 5.0 < info["psnr"] < 60.0 and 0.0 < info["ssim"] <= 1.0
    env = small_env(max_steps=1)  # not asked for: not computed
    env.reset(seed=0)
    assert "psnr" not in env.step(np.full((3, 32, 32), 20))[4]


def test_fidelity_to_the_released_code():
    """Recorded actions of the original code (BGR heads) reproduce its images in our RGB env."""
    ref = np.load(reference_file("rellie_reference_astronaut.npz"))
    bgr = cv2.imread(str(reference_file("rellie_reference_astronaut_input.png")))
    env = LowLightEnv(crop_size=None, max_steps=6, lead_channel=2)
    obs, _ = env.reset(options={"image": bgr[:, :, ::-1]})
    images = ref["images_bgr_chw"][:, ::-1]  # BGR -> RGB
    np.testing.assert_allclose(obs, images[0], atol=1e-5)
    for t in range(6):
        obs, *_ = env.step(ref["actions_bgr"][t][::-1])  # RGB channel c takes head 2 - c
        np.testing.assert_allclose(obs, images[t + 1], atol=1e-5)


@pytest.mark.parametrize("mode", ["paper", "delta", "pixel", "pixel-delta", "head-delta"])
def test_reward_is_the_mean_of_the_reward_map(mode):
    env = small_env(reward_mode=mode, max_steps=3)
    env.reset(seed=0)
    env.action_space.seed(0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    m = info["reward_map"]
    assert m.shape == ((3, 32, 32) if mode == "head-delta" else (32, 32)) and m.dtype == np.float32
    if mode == "head-delta":
        m = m.sum(0)
    assert reward == pytest.approx(float(m.mean()), rel=1e-6)
    if mode in ("paper", "delta"):
        assert np.all(m == m.flat[0])
    else:
        assert m.std() > 0


def test_reward_modes_agree_on_the_loss():
    action = np.random.default_rng(0).integers(0, 27, (3, 32, 32))
    out = {}
    for mode in ("paper", "delta", "pixel"):
        env = small_env(reward_mode=mode)
        _, info0 = env.reset(seed=5)
        _, r, _, _, info = env.step(action)
        out[mode] = (r, info0, info)
    r_paper, _, info = out["paper"]
    total = info["image_loss"] + 200 * info["loss/smoothness"]
    assert r_paper == pytest.approx(-total, rel=1e-5)
    assert out["pixel"][0] == pytest.approx(r_paper, rel=1e-3)  # local terms average to the global ones
    r_delta, info0, info = out["delta"]
    assert r_delta == pytest.approx(info0["image_loss"] - total, rel=1e-4)


def test_pixel_delta_shares_add_up_to_the_drop():
    env = small_env(reward_mode="pixel-delta", smoothness_weight=0.0, crop_size=64)
    _, info = env.reset(seed=3)
    for action in (26, 26, 26, 0):  # big steps, and one that overshoots back: the midpoint rule is exact
        before = info["image_loss"]
        _, reward, _, _, info = env.step(np.full((3, 64, 64), action))
        assert reward == pytest.approx(before - info["image_loss"], rel=2e-3, abs=1e-4)
    # A pixel that alone darkens a too-dark image is charged; its brightening neighbours are credited.
    env.reset(seed=3)
    action = np.full((3, 64, 64), 16)
    action[:, 30, 30] = 0
    *_, info = env.step(action)
    m = info["reward_map"]
    assert m[30, 30] < 0 < m[30, 31]


@pytest.mark.parametrize("lead_channel", [2, None])
def test_head_delta_splits_each_pixels_share_among_its_heads(lead_channel):
    action = np.random.default_rng(1).integers(0, 27, (3, 32, 32))
    maps = {}
    for mode in ("pixel-delta", "head-delta"):
        env = small_env(reward_mode=mode, lead_channel=lead_channel)
        env.reset(seed=4)
        maps[mode] = env.step(action)[4]["reward_map"]
    np.testing.assert_allclose(maps["head-delta"].sum(0), maps["pixel-delta"], rtol=1e-4, atol=1e-2)
    # A head whose alpha is 0 (action 6) changed nothing: it earns only its smoothness charge, nothing else.
    env = small_env(reward_mode="head-delta", lead_channel=lead_channel, smoothness_weight=0.0)
    env.reset(seed=4)
    action = np.full((3, 32, 32), 20)
    action[0] = 6
    m = env.step(action)[4]["reward_map"]
    assert np.all(m[0] == 0) and m[1].mean() > 0 and m[2].mean() > 0
    # The lead head is credited with what it did to the other channels too: it earns the most.
    if lead_channel is not None:
        assert m[2].mean() > 5 * m[1].mean()


def test_delta_rewards_telescope_without_smoothness():
    env = small_env(reward_mode="delta", smoothness_weight=0.0, max_steps=5)
    _, info0 = env.reset(seed=1)
    total = 0.0
    for a in (26, 20, 10, 3, 6):
        _, r, _, _, info = env.step(np.full((3, 32, 32), a))
        total += r
    assert total == pytest.approx(info0["image_loss"] - info["image_loss"], rel=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_brightening_lowers_the_exposure_loss(seed):
    # Without the colour term: brightening a strongly cast crop (retina's) raises it more than exposure falls.
    env = small_env(reward_mode="paper", max_steps=6, color_weight=0.0)
    env.reset(seed=seed)
    rewards, exposure = [], []
    for _ in range(3):
        _, r, _, _, info = env.step(np.full((3, 32, 32), 26))
        rewards.append(r)
        exposure.append(info["loss/exposure"])
    assert exposure[0] > exposure[1] > exposure[2] and rewards[2] > rewards[0]


def test_render_shows_input_beside_current():
    env = small_env(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    env.step(np.full((3, 32, 32), 26))
    frame = env.render()
    assert frame.shape == (32, 64, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[:, :32], np.round(obs.transpose(1, 2, 0) * 255).astype(np.uint8))
    assert frame[:, 32:].mean() > frame[:, :32].mean()


def test_reset_from_an_index_and_an_image():
    env = LowLightEnv(data="builtin:test", crop_size=None, flip_prob=0, rotate_prob=0)
    obs, _ = env.reset(seed=0, options={"index": 1})
    assert obs.shape == (3, *env.source.images[1].shape[:2]) == env.observation_space.shape
    img = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    obs, _ = env.reset(options={"image": img})
    assert obs.shape == (3, 20, 24) == env.action_space.shape
    np.testing.assert_allclose(obs, img.transpose(2, 0, 1) / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="index"):
        env.reset(options={"index": 99})


# -- bad input ---------------------------------------------------------------------------------------------


def test_missing_and_empty_folders_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        LowLightEnv(data=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=str(tmp_path)):
        LowLightEnv(data=str(tmp_path))


def test_unreadable_files_are_skipped_and_listed(tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), np.full((40, 40, 3), 30, np.uint8))
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "sub" / "deep.jpg"), np.full((40, 40, 3), 60, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        env = LowLightEnv(data=str(tmp_path), crop_size=32)
    assert sorted(env.source.names) == ["deep", "good"]
    assert env.source.skipped == [str(tmp_path / "broken.png")]
    (tmp_path / "good.png").unlink()
    (tmp_path / "sub" / "deep.jpg").unlink()
    with pytest.raises(ValueError, match="no readable image"), pytest.warns(UserWarning):
        LowLightEnv(data=str(tmp_path))


def test_grayscale_rgba_and_16_bit_images_are_converted(tmp_path):
    gray = np.full((40, 50), 100, np.uint8)
    rgba = np.dstack([np.full((40, 50, 3), 200, np.uint8), np.zeros((40, 50), np.uint8)])
    deep = np.full((40, 50, 3), 65535 // 4, np.uint16)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    env = LowLightEnv(data=str(tmp_path), crop_size=None)
    means = {n: float(i.mean()) for n, i in zip(env.source.names, env.source.images)}
    assert all(i.shape == (40, 50, 3) and i.dtype == np.float32 for i in env.source.images)
    assert means == pytest.approx({"deep": 0.25, "gray": 100 / 255, "rgba": 200 / 255}, abs=1e-3)
    for arr in (gray, rgba, deep, gray[:, :, None]):
        assert to_float_rgb(arr).shape == (40, 50, 3)
    with pytest.raises(ValueError, match="shape"):
        to_float_rgb(np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_float_rgb(np.full((4, 5, 3), 2.0))


def test_color_cast_scales_the_channels_apart():
    from rellie_env.images import Degradation

    clean = np.full((8, 8, 3), 0.8, np.float32)
    quiet = dict(shot_noise=(0.0, 0.0), read_noise=0.0)
    plain = Degradation(color_cast=0.0, **quiet).apply(clean, np.random.default_rng(0))
    cast = Degradation(color_cast=0.4, **quiet).apply(clean, np.random.default_rng(0))
    assert np.ptp(plain.mean((0, 1))) == 0 and np.ptp(cast.mean((0, 1))) > 0.01
    ratios = cast.mean((0, 1)) / plain.mean((0, 1))
    assert np.all((np.exp(-0.4) <= ratios) & (ratios <= np.exp(0.4)))


def test_min_scale_shows_the_scene_at_random_smaller_scales():
    ramp = np.repeat(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :, None], 256, 0).repeat(3, 2)
    unscaled = 31 / 255  # the value span of a 32-pixel crop of the ramp at its own scale

    def spans(min_scale):
        crop = Augmentation(32, flip_prob=0.0, rotate_prob=0.0, min_scale=min_scale)
        rng = np.random.default_rng(0)
        return np.array([np.ptp(crop(rng, ramp)[0][..., 0]) for _ in range(30)])

    np.testing.assert_allclose(spans(1.0), unscaled, rtol=1e-5)
    shrunk = spans(0.25)  # shrunk by s, the ramp climbs 1/s times faster per pixel
    assert shrunk.min() > unscaled * 0.99 and shrunk.max() < unscaled * 4.1 and shrunk.max() > unscaled * 2
    with pytest.raises(ValueError, match="min_scale"):
        Augmentation(32, min_scale=0.0)


def test_rotation_keeps_the_rescaled_size():
    # A rotation after rescaling must rotate the shrunk image in its own frame, not pad it with reflections
    # out to the original size.
    image = np.random.default_rng(1).random((120, 90, 3), dtype=np.float32)
    for seed in range(5):
        still = Augmentation(None, flip_prob=0.0, rotate_prob=0.0, min_scale=0.3)(np.random.default_rng(seed), image)[0]
        turned = Augmentation(None, flip_prob=0.0, rotate_prob=1.0, min_scale=0.3)(np.random.default_rng(seed), image)[0]
        assert turned.shape == still.shape and still.shape[0] < 120


def test_images_smaller_than_the_crop_are_resized_up():
    small = [np.full((20, 30, 3), 0.3, np.float32)]
    env = LowLightEnv(data=small, crop_size=32)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 32, 32)
    np.testing.assert_allclose(obs, 0.3, atol=1e-6)


def test_bad_actions_say_what_was_expected():
    env = small_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        env.step(np.zeros((3, 16, 16), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 27\)"):
        env.step(np.full((3, 32, 32), 27))
    with pytest.raises(ValueError, match=r"\[0, 27\)"):
        env.step(np.full((3, 32, 32), -1))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.full((3, 32, 32), 0.5))


def test_bad_arguments():
    with pytest.raises(ValueError, match="reward_mode"):
        LowLightEnv(reward_mode="bogus")
    with pytest.raises(ValueError, match="crop_size"):
        LowLightEnv(crop_size=4)
    with pytest.raises(ValueError, match="color_mode"):
        LowLightEnv(color_mode="sepia")
    with pytest.raises(ValueError, match="empty"):
        LowLightEnv(data=[])


def test_targets_folder_pairs_by_stem(tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    low.mkdir()
    high.mkdir()
    rng = np.random.default_rng(0)
    clean = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(low / "a.png"), (clean * 0.2).astype(np.uint8))
    cv2.imwrite(str(high / "a.png"), clean)
    cv2.imwrite(str(low / "b.png"), (clean * 0.3).astype(np.uint8))  # no target
    env = LowLightEnv(data=str(low), targets=str(high), crop_size=None, max_steps=1, fidelity=True)
    assert [t is not None for t in env.source.targets] == [True, False]
    env.reset(options={"index": 0})
    *_, info = env.step(np.full((3, 40, 40), 26))
    assert "psnr" in info
    env.reset(options={"index": 1})
    *_, info = env.step(np.full((3, 40, 40), 26))
    assert "psnr" not in info


def test_registered_once():
    assert "LowLight-v0" in gym.registry and rellie_env.LowLightEnv is LowLightEnv


def test_docstring_examples_run():
    """The examples in LowLightEnv's docstring (Arguments, Vectorized environment, Example) run as written."""
    blocks = re.findall(r"```python\n(.*?)```", LowLightEnv.__doc__, re.S)
    assert len(blocks) == 3
    namespace = {"np": np}
    for block in blocks:
        exec(textwrap.dedent(block), namespace)
    assert namespace["truncated"] is False and namespace["obs"].shape == (3, 64, 64)


def test_builtin_splits_are_disjoint_and_each_photo_degrades_alike_in_every_split():
    assert not set(BUILTIN_TRAIN) & set(BUILTIN_TEST)
    train, test, every = (builtin_images(split) for split in ("train", "test", "all"))
    assert every.names == train.names + test.names == list(BUILTIN_TRAIN + BUILTIN_TEST)
    for image, target in zip(list(train.images) + list(test.images), every.images):
        np.testing.assert_array_equal(image, target)
    for image, clean in zip(every.images, every.targets):
        assert image.shape == clean.shape and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.mean() < 0.6 * clean.mean()  # darkened


@pytest.mark.parametrize("head", [0, 2])  # a head that follows the lead, and the lead head
def test_final_loss_shares_are_each_actions_effect_on_the_last_images_loss(head):
    from rellie_env.core import EpisodeInput, final_loss_shares, state_loss
    from rellie_env.curves import ActionSet
    from rellie_env.losses import LossWeights

    action_set, weights = ActionSet(), LossWeights(smoothness=0.0)
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64) * 0.3 + 0.02)
    actions = torch.randint(8, 21, (4, 1, 3, 32, 32), generator=gen)

    def final_loss(acts: torch.Tensor) -> tuple[float, torch.Tensor]:
        images, x = [], x0
        for a in acts:
            images.append(x)
            x, _ = action_set.step(x, a)
        return float(state_loss(x, EpisodeInput.of(x0, weights), weights)), torch.stack(images)

    loss, images = final_loss(actions)
    shares = final_loss_shares(images, actions, action_set, weights)
    assert shares.shape == (4, 1, 3, 32, 32)
    t, y, x = 1, 10, 12
    moved = actions.clone()
    moved[t, 0, head, y, x] += 1  # alpha up by one action step
    alpha = float(action_set.alpha(actions[t, 0, head, y, x]))
    # share = -H*W * alpha * dL/dalpha, so moving alpha by one step changes the final loss by:
    predicted = -float(shares[t, 0, head, y, x]) / (32 * 32 * alpha) * action_set.scale
    assert final_loss(moved)[0] - loss == pytest.approx(predicted, rel=0.02)
