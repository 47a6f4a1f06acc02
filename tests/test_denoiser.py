"""The guided denoiser: its noise estimate, what it removes and keeps, and its tiled form."""
from __future__ import annotations

import pytest
import torch

from agents.denoiser import MIN_READ_VARIANCE, estimate_noise, guided_denoise
from agents.inference import enhance, guided_denoise_tiled
from rellie_env.metrics import psnr

from .conftest import dark_photo, psnr_np, small_policy


def poisson_gaussian(clean: torch.Tensor, a: float, b: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=generator) * (a * clean + b).sqrt()
    return (clean + noise).clamp(0, 1)


def smooth_scene(h: int = 256, w: int = 256) -> torch.Tensor:
    """Dark, smooth gradients over the whole range of a low-light photo, ``(1, 3, h, w)``."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack((0.02 + 0.3 * x, 0.02 + 0.25 * x * y, 0.05 + 0.2 * y))[None]


@pytest.mark.parametrize("a", [5e-4, 2e-3])
def test_the_noise_estimate_finds_the_shot_noise(a):
    clean = smooth_scene()
    estimate = estimate_noise(poisson_gaussian(clean, a, (1.5 / 255) ** 2))
    assert estimate.shape == (1, 2)
    assert 0.5 * a < estimate[0, 0] < 1.3 * a, estimate  # the flattest places: a little below, not above
    clean_estimate = estimate_noise(clean)
    assert clean_estimate[0, 0] < 0.05 * a and clean_estimate[0, 1] == pytest.approx(MIN_READ_VARIANCE)


def test_the_noise_estimate_of_a_large_image_samples_blocks_alike():
    clean = smooth_scene(1200, 1000)
    estimate = estimate_noise(poisson_gaussian(clean, 1e-3, 1e-5))
    assert 0.5e-3 < estimate[0, 0] < 1.3e-3


def test_a_flat_image_has_a_noise_estimate():
    estimate = estimate_noise(torch.full((2, 3, 40, 40), 0.1))
    assert torch.isfinite(estimate).all() and (estimate >= 0).all()


def test_guided_denoising_removes_amplified_noise_and_keeps_edges():
    clean = smooth_scene(128, 128)
    clean[:, :, :, 64:] += 0.1  # a step edge
    noisy = poisson_gaussian(clean, 1e-3, (1.5 / 255) ** 2)
    gain = 3.0
    target, enhanced = (clean * gain).clamp(0, 1), (noisy * gain).clamp(0, 1)
    out = guided_denoise(enhanced, noisy)
    assert psnr(out, target) > psnr(enhanced, target) + 5
    step = (out[:, :, 20:108, 66] - out[:, :, 20:108, 61]).mean()
    assert step > 0.9 * (target[:, :, 20:108, 66] - target[:, :, 20:108, 61]).mean()  # the edge stays sharp


def test_tiled_guided_denoising_equals_the_whole():
    noisy = poisson_gaussian(smooth_scene(150, 170), 1e-3, 1e-5)
    enhanced = (noisy * 2.5).clamp(0, 1)
    whole = guided_denoise(enhanced, noisy, estimate_noise(noisy))
    torch.testing.assert_close(guided_denoise_tiled(enhanced, noisy, tile=40), whole, atol=1e-6, rtol=0)


def test_enhance_denoises_its_result_against_its_input():
    policy = small_policy(init_alpha=0.5, init_alpha_spread=0.1).eval()
    clean = dark_photo(90, 120)
    noisy = poisson_gaussian(torch.from_numpy(clean).permute(2, 0, 1)[None], 2e-3, 1e-5)
    photo = noisy[0].permute(1, 2, 0).numpy()
    plain = enhance(policy, photo)
    expected = guided_denoise(torch.from_numpy(plain).permute(2, 0, 1)[None], noisy)
    torch.testing.assert_close(torch.from_numpy(enhance(policy, photo, denoise="guided")).permute(2, 0, 1)[None],
                               expected, atol=1e-6, rtol=0)
    assert psnr_np(enhance(policy, photo, denoise="guided"), plain) < 60  # it did change the picture
