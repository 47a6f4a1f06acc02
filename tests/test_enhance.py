"""Full-resolution enhancement: tiling is exact, fast mode, any size, the steps knob, denoising, checkpoints."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import PixelA2C, load_official_rellie, load_policy, save_weights
from agents.checkpoints import save_model
from agents.ffdnet import FFDNet, denoise_ffdnet
from agents.inference import (
    denoise_ffdnet_tiled,
    enhance,
    fast_shape,
    greedy_rollout,
    policy_actions,
    receptive_radius,
    tiles,
    upsample_rows,
)
from rellie_env.images import read_image
from rellie_env.vector import LowLightSB3VecEnv

from .conftest import dark_photo, nchw, psnr_np, reference_file, small_policy


def hwc(batch: torch.Tensor) -> np.ndarray:
    return batch[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def random_policy():
    """Random (He-initialised) weights: actions change from pixel to pixel, the hardest case for tiling."""
    torch.manual_seed(0)
    policy = small_policy().eval()
    with torch.no_grad():
        for m in policy.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight)
                m.bias.zero_()
    return policy


@pytest.fixture(scope="module")
def brightening_policy():
    """Starts peaked at alpha 0.3, with enough weight noise that its actions follow the image."""
    torch.manual_seed(1)
    return small_policy(init_alpha=0.3, init_alpha_spread=0.15, init_weight_scale=1.0).eval()


def test_receptive_radius():
    assert receptive_radius(small_policy()) == 16  # released dilations: 1 + 2 + 3 + 4 + 3 + 2 + 1
    assert receptive_radius(small_policy(trunk_dilations=(2,), branch_dilations=(3,))) == 7


def test_tiles_cover_the_image_once_with_a_halo():
    halo = 16
    for h, w, tile, align in ((100, 150, 48, 1), (101, 37, 16, 2), (5, 300, 8, 1), (30, 30, 64, 1), (99, 99, 20, 2)):
        seen = np.zeros((h, w), int)
        shapes = set()
        for rows, cols, padded_rows, padded_cols in tiles(h, w, tile, halo, align):
            seen[rows, cols] += 1
            shapes.add((padded_rows.stop - padded_rows.start, padded_cols.stop - padded_cols.start))
            for span, padded, n in ((rows, padded_rows, h), (cols, padded_cols, w)):
                assert span.start % align == 0 and padded.start % align == 0
                assert padded.start == 0 or span.start - padded.start >= halo  # a halo, or the true border
                assert padded.stop == n or padded.stop - span.stop >= halo
                assert 0 <= padded.start and padded.stop <= n
        assert (seen == 1).all()
        assert align > 1 or len(shapes) == 1  # one tile shape: the allocator reuses its memory
    assert len(tiles(100, 150, 48, 16)) == 12 and len(tiles(100, 150, 512, 16)) == 1


def test_tiled_actions_and_images_equal_the_untiled(random_policy):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 100, 150) * 0.4
    untiled = policy_actions(random_policy, image, tile=10**4)
    assert len(torch.unique(untiled)) == 27  # varied actions: a real test of the halo
    assert torch.equal(policy_actions(random_policy, image, tile=48), untiled)
    assert not torch.equal(policy_actions(random_policy, image, tile=48, halo=3), untiled)  # the halo matters
    assert torch.equal(untiled, random_policy.distribution(image).mode().to(torch.uint8))
    assert random_policy.action_net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    random_policy.distribution(image).log_prob(untiled.long()).sum().backward()  # the policy can still train
    mean_policy = small_policy(deterministic_action="mean").eval()  # acts on the expected curve strength
    expected = policy_actions(mean_policy, image, tile=10**4)
    assert torch.equal(expected, mean_policy.greedy_actions(image).to(torch.uint8))
    assert torch.equal(policy_actions(mean_policy, image, tile=48), expected)
    colour_policy = small_policy(global_color=True, global_exposure=True).eval()  # tiles see the whole image's
    untiled = policy_actions(colour_policy, image, tile=10**4)
    assert torch.equal(policy_actions(colour_policy, image, tile=48), untiled)
    photo = dark_photo(100, 150)
    reference, _ = greedy_rollout(random_policy, nchw(photo), steps=6)  # the plain untiled rollout
    out = enhance(random_policy, photo, steps=6, tile=48)
    assert out.shape == photo.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, hwc(reference), atol=1e-5, rtol=0)


@pytest.mark.parametrize("h, w", [(1, 1), (7, 300), (301, 5), (33, 65), (64, 64)])
def test_any_size_and_aspect(random_policy, h, w):
    photo = dark_photo(h, w)
    out = enhance(random_policy, photo, steps=2, tile=32)
    assert out.shape == (h, w, 3) and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, enhance(random_policy, photo, steps=2, tile=10**4), atol=1e-5, rtol=0)
    fast = enhance(random_policy, photo, steps=2, fast=True)
    assert fast.shape == (h, w, 3) and np.isfinite(fast).all()


def test_upsampled_rows_are_bilinear():
    maps = torch.rand(1, 3, 13, 17)
    full = F.interpolate(maps, (100, 150), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample_rows(maps, (100, 150), 0, 100), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(upsample_rows(maps, (100, 150), 37, 61), full[:, :, 37:61], atol=1e-5, rtol=0)


def test_fast_mode_is_close_to_full_mode(brightening_policy):
    assert fast_shape(400, 600) == (80, 120) and fast_shape(400, 600, 0.5) == (200, 300)
    assert fast_shape(400, 600, 300) == (200, 300)
    assert fast_shape(40, 60) == (32, 48)  # never under 32 px a side
    photo = cv2.GaussianBlur(dark_photo(192, 256), (0, 0), 4)  # a smooth photo
    full = enhance(brightening_policy, photo)
    fast, images, alphas = enhance(brightening_policy, photo, fast=True, return_steps=True)
    assert len(images) == len(alphas) == 6 and alphas[0].shape == photo.shape
    assert fast.mean() > photo.mean() + 0.1
    assert psnr_np(fast, full) > 30


def test_steps_knob_brightens_monotonically(brightening_policy):
    photo = dark_photo(48, 64)
    np.testing.assert_array_equal(enhance(brightening_policy, photo, steps=0), photo)
    final, images, alphas = enhance(brightening_policy, photo, steps=6, return_steps=True)
    means = [photo.mean()] + [im.mean() for im in images]
    assert all(b > a + 0.01 for a, b in zip(means, means[1:]))
    np.testing.assert_array_equal(final, images[-1])
    np.testing.assert_allclose(enhance(brightening_policy, photo, steps=3), images[2], atol=1e-6)
    _, small_images, small_alphas = enhance(brightening_policy, photo, steps=2, return_steps=True, steps_size=32)
    assert small_images[0].shape == small_alphas[1].shape == (24, 32, 3)  # shrunk for a strip
    with pytest.raises(ValueError, match="denoise"):
        enhance(brightening_policy, photo, denoise="bm3d")
    with pytest.raises(ValueError, match="ffdnet"):
        enhance(brightening_policy, photo, denoise="ffdnet")


def test_tiled_ffdnet_equals_untiled():
    torch.manual_seed(0)
    model = FFDNet().eval()
    image = torch.rand(1, 3, 67, 91)
    sigma = torch.rand(1, 3, 34, 46) * 0.1
    expected = denoise_ffdnet(model, image, sigma)
    assert len(tiles(67, 91, 32, 24, align=2)) > 1
    torch.testing.assert_close(denoise_ffdnet_tiled(model, image, sigma, tile=32), expected, atol=1e-5, rtol=0)


def test_denoising_reduces_noise():
    policy = small_policy(init_alpha=0.5, init_alpha_spread=0.1).eval()  # the same actions on clean and noisy
    clean = cv2.GaussianBlur(dark_photo(96, 96), (0, 0), 3)  # little detail: what the denoisers remove is noise
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.01, clean.shape), 0, 1).astype(np.float32)
    target = enhance(policy, clean)  # the enhancement of the noise-free photo
    plain = psnr_np(enhance(policy, noisy), target)
    nlm = psnr_np(enhance(policy, noisy, denoise="nlm"), target)
    ffdnet = psnr_np(enhance(policy, noisy, denoise="ffdnet", ffdnet=reference_file("ffdnet_net_rgb.pth")), target)
    assert nlm > plain + 1 and ffdnet > plain + 3  # measured 28.6 dB -> 30.5 (nlm), 37.6 (ffdnet)


def test_our_checkpoints_enhance_alike(tmp_path):
    env = LowLightSB3VecEnv(1, seed=0, crop_size=32, max_steps=3)
    model = PixelA2C(env=env, n_steps=3, policy_kwargs=dict(width=8, init_alpha=0.3), seed=0)
    photo = dark_photo(40, 56)
    expected = enhance(model.policy.eval(), photo, steps=3)
    for path in (save_model(model, tmp_path / "m.zip"), save_weights(model.policy, tmp_path / "p.pt")):
        np.testing.assert_array_equal(enhance(load_policy(path), photo, steps=3), expected)


def test_official_weights_enhance_as_the_original():
    """Tiled, the released agent gives the original code's 6-step result (Chainer run on the reference PNG)."""
    ref = np.load(reference_file("rellie_reference_astronaut.npz"))
    for policy in (load_official_rellie(reference_file("rellie_official_model.npz")),
                   load_policy(reference_file("rellie_official_model.npz"))):
        image = read_image(reference_file("rellie_reference_astronaut_input.png"))
        np.testing.assert_allclose(image, ref["input_bgr_chw"][::-1].transpose(1, 2, 0), atol=1e-6)
        out = enhance(policy, image, steps=6, tile=64)
        expected = ref["images_bgr_chw"][6][::-1].transpose(1, 2, 0)
        assert np.abs(out - expected).max() < 1e-4
    fast = enhance(policy, image, steps=6, fast=True)  # the policy on a 43 x 32 copy
    assert psnr_np(fast, out) > 35
