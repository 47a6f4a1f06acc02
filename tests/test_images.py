"""Image sources: folders of real or darkened photos, mixes, lazy reading, the low-light degradation."""
import cv2
import numpy as np
import pytest

from rellie_env.env import LowLightEnv
from rellie_env.images import Augmentation, Degradation, Source, load_images


def write_photos(folder, n, value, size=(40, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((*size, 3), value + i, np.uint8))
    return folder


def test_source_specs_parse_the_darken_prefix_and_weight():
    assert Source.parse("a/b") == Source("a/b", False, 1.0)
    assert Source.parse("dark:a/b@0.25") == Source("a/b", True, 0.25)
    assert Source.parse("dark:x@y/z") == Source("x@y/z", True, 1.0)  # an '@' inside the path is kept
    assert Source.parse("dark:a/b[24:]@2") == Source("a/b", True, 2.0, slice(24, None))
    assert Source.parse("a/b[:-3]").part == slice(None, -3)
    with pytest.raises(ValueError, match="weight"):
        Source.parse("a@zero")
    with pytest.raises(ValueError, match="positive"):
        Source.parse("a@-1")


def test_dark_folder_images_are_darkened_copies_of_their_targets(tmp_path):
    write_photos(tmp_path / "clean", 3, 150)
    images = load_images(f"dark:{tmp_path / 'clean'}")
    assert len(images) == 3 and all(images.degradation(i) is not None for i in range(3))
    for low, clean in zip(images.images, images.targets):
        assert low.shape == clean.shape and low.mean() < 0.6 * clean.mean()
    again = load_images(f"dark:{tmp_path / 'clean'}")
    np.testing.assert_array_equal(images.images[1], again.images[1])  # a fixed, seeded darkening


def test_a_part_of_a_folder_holds_the_rest_aside(tmp_path):
    folder = write_photos(tmp_path / "clean", 5, 100)
    held, rest = load_images(f"dark:{folder}[:2]"), load_images(f"dark:{folder}[2:]")
    assert held.names == ["p0", "p1"] and rest.names == ["p2", "p3", "p4"]


def test_a_mix_draws_sources_by_weight_not_by_size(tmp_path):
    real = write_photos(tmp_path / "real", 1, 20)
    clean = write_photos(tmp_path / "clean", 9, 150)
    images = load_images([str(real), f"dark:{clean}@3"])
    rng = np.random.default_rng(0)
    draws = np.array([images.draw(rng) for _ in range(4000)])
    assert (draws == 0).mean() == pytest.approx(0.25, abs=0.03)  # weight 1 against 3, though 1 photo against 9
    assert images.target(0) is None and images.target(1) is not None


def test_folders_are_read_lazily(tmp_path, monkeypatch):
    write_photos(tmp_path / "many", 50, 10)
    reads = []
    original = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    images = load_images(str(tmp_path / "many"))
    assert reads == [] and len(images) == 50
    images.image(7)
    images.image(7)
    assert len(reads) == 1  # read once, then cached


def test_an_env_trains_on_a_mix_and_darkens_each_episode_afresh(tmp_path):
    clean = write_photos(tmp_path / "clean", 2, 180)
    env = LowLightEnv(data=[f"dark:{clean}"], crop_size=32, max_steps=1, fidelity=True)
    first, _ = env.reset(seed=0, options={"index": 0})
    second, _ = env.reset(options={"index": 0})
    assert first.mean() < 0.5 and not np.allclose(first.mean(), second.mean())  # new gain each episode
    *_, info = env.step(np.full((3, 32, 32), 26))
    assert "psnr" in info  # the clean crop is the target


def test_low_light_degradation_has_signal_dependent_noise_and_a_cast():
    flat = np.full((200, 200, 3), 0.5, np.float32)
    bright = Degradation(gamma=(1.0, 1.0), gain=(1.0, 1.0), color_cast=0.0, shot_noise=(2e-3, 2e-3), read_noise=0.0)
    dark = Degradation(gamma=(1.0, 1.0), gain=(0.2, 0.2), color_cast=0.0, shot_noise=(2e-3, 2e-3), read_noise=0.0)
    rng = np.random.default_rng(0)
    # Poisson noise: variance a * signal
    assert bright.apply(flat, rng).var() == pytest.approx(2e-3 * 0.5, rel=0.1)
    assert dark.apply(flat, rng).var() == pytest.approx(2e-3 * 0.1, rel=0.1)
    cast = Degradation(gamma=(1.0, 1.0), gain=(0.5, 0.5), color_cast=0.1, shot_noise=(0, 0), read_noise=0.0)
    means = cast.apply(flat, rng).mean((0, 1))
    assert np.ptp(means) > 0 and np.all((0.25 * np.exp(-0.1) <= means) & (means <= 0.25 * np.exp(0.1)))
    with pytest.raises(ValueError, match="gain"):
        Degradation(gain=(0.5, 0.2))


def test_crops_take_the_window_first_and_equal_the_whole_image_transformed():
    image = np.random.default_rng(0).random((90, 120, 3), dtype=np.float32)
    for seed in range(8):
        crop = Augmentation(40, flip_prob=0.5, rotate_prob=0.5)(np.random.default_rng(seed), image)[0]
        whole = Augmentation(None, flip_prob=0.5, rotate_prob=0.5)(np.random.default_rng(seed), image)[0]
        # the window the crop took, found in the whole transformed image (warpAffine rounds to ~1e-5)
        errors = [np.abs(whole[y : y + 40, x : x + 40] - crop).max() for y in range(51) for x in range(81)]
        assert min(errors) < 1e-4


def test_single_and_batched_envs_draw_the_same_episodes_from_a_mix(tmp_path):
    from rellie_env.batched import BatchedLowLightEnv

    real = write_photos(tmp_path / "real", 2, 30)
    clean = write_photos(tmp_path / "clean", 3, 150)
    kwargs = dict(data=[str(real), f"dark:{clean}@2"], crop_size=32)
    batched = BatchedLowLightEnv(3, **kwargs).reset(seed=[4, 5, 6])
    singles = [LowLightEnv(**kwargs).reset(seed=s)[0] for s in (4, 5, 6)]
    np.testing.assert_array_equal(batched.numpy(), np.stack(singles))
