"""Baselines: Zero-DCE and FFDNet with their released weights, ReLLIE's gain noise map, OpenCV classics."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from agents.baselines import (
    clahe,
    gamma_correction,
    histogram_equalization,
    mean_luminance,
    nlm_denoise,
    zero_dce_enhance,
)
from agents.ffdnet import FFDNet, denoise_ffdnet, gain_noise_sigma, load_ffdnet
from agents.zero_dce import ZeroDCE, load_zero_dce

from .conftest import reference_file


def psnr(x: np.ndarray, target: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((x.astype(np.float64) - target) ** 2)))


def chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)


def hwc(batch: torch.Tensor) -> np.ndarray:
    return batch[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """The astronaut, shrunk to 128 x 128, float32 RGB."""
    photo = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    return photo.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def dark(clean: np.ndarray) -> np.ndarray:
    return (clean**2.2 * 0.45).astype(np.float32)


@pytest.fixture(scope="module")
def noisy(clean: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, 25 / 255, clean.shape)
    return np.clip(clean + noise, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def ffdnet() -> FFDNet:
    return load_ffdnet(reference_file("ffdnet_net_rgb.pth"))


# --- Zero-DCE ---------------------------------------------------------------------------------------------


def test_zero_dce_weights_and_brightening(dark: np.ndarray):
    model = load_zero_dce(reference_file("zero_dce_epoch99.pth"))
    assert sum(p.numel() for p in model.parameters()) == 79_416
    enhanced, curves = model(chw(dark))
    assert enhanced.shape == (1, 3, 128, 128) and curves.shape == (1, 24, 128, 128)
    assert curves.abs().max() <= 1
    assert enhanced.min() >= -1e-6 and enhanced.max() <= 1 + 1e-6
    out = zero_dce_enhance(model, dark)
    assert out.shape == dark.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert mean_luminance(out) > mean_luminance(dark) + 0.15  # measured 0.126 -> 0.314


def test_zero_dce_matches_released_forward(dark: np.ndarray):
    """Against a literal port of ``enhance_net_nopool.forward`` (Zero-DCE_code/model.py) on the raw state dict."""
    path = reference_file("zero_dce_epoch99.pth")
    sd = torch.load(path, map_location="cpu", weights_only=True)  # the file was saved from a GPU
    x = chw(dark)

    def conv(name: str, v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    x1 = F.relu(conv("e_conv1", x))
    x2 = F.relu(conv("e_conv2", x1))
    x3 = F.relu(conv("e_conv3", x2))
    x4 = F.relu(conv("e_conv4", x3))
    x5 = F.relu(conv("e_conv5", torch.cat([x3, x4], 1)))
    x6 = F.relu(conv("e_conv6", torch.cat([x2, x5], 1)))
    r = torch.tanh(conv("e_conv7", torch.cat([x1, x6], 1)))
    y = x
    for i in range(8):
        y = y + r[:, 3 * i : 3 * i + 3] * (torch.pow(y, 2) - y)
    enhanced, curves = load_zero_dce(path)(x)
    torch.testing.assert_close(curves, r)
    torch.testing.assert_close(enhanced, y)


def test_zero_dce_strips_dataparallel_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in ZeroDCE().state_dict().items()}
    torch.save(state, tmp_path / "wrapped.pth")
    assert isinstance(load_zero_dce(tmp_path / "wrapped.pth"), ZeroDCE)


def test_bad_weight_files_name_the_file(tmp_path):
    text = tmp_path / "not_weights.pth"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not_weights.pth"):
        load_zero_dce(text)
    with pytest.raises(ValueError, match="missing.pth"):
        load_ffdnet(tmp_path / "missing.pth")
    wrong = tmp_path / "wrong_model.pth"
    torch.save(ZeroDCE().state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong_model.pth"):
        load_ffdnet(wrong)
    nan = tmp_path / "nan.pth"
    torch.save({k: torch.full_like(v, float("nan")) for k, v in ZeroDCE().state_dict().items()}, nan)
    with pytest.raises(ValueError, match="nan.pth.*non-finite"):
        load_zero_dce(nan)


# --- FFDNet -----------------------------------------------------------------------------------------------


def test_ffdnet_layout_matches_original_loops():
    """pixel_unshuffle / pixel_shuffle give the channel order of the original's strided loops (functions.py)."""
    x = torch.rand(2, 3, 6, 8)
    down = torch.zeros(2, 12, 3, 4)
    offsets = [[0, 0], [0, 1], [1, 0], [1, 1]]
    for idx, (i, j) in enumerate(offsets):
        down[:, idx:12:4] = x[:, :, i::2, j::2]
    assert torch.equal(F.pixel_unshuffle(x, 2), down)
    up = torch.zeros_like(x)
    for idx, (i, j) in enumerate(offsets):
        up[:, :, i::2, j::2] = down[:, idx:12:4]
    assert torch.equal(F.pixel_shuffle(down, 2), up)


def test_ffdnet_denoises(ffdnet: FFDNet, clean: np.ndarray, noisy: np.ndarray):
    assert isinstance(ffdnet.intermediate_dncnn.itermediate_dncnn[3], torch.nn.BatchNorm2d)
    assert not ffdnet.training
    out = hwc(denoise_ffdnet(ffdnet, chw(noisy), 25 / 255))
    assert out.min() >= 0 and out.max() <= 1
    # measured 20.8 dB -> 28.6 dB
    assert psnr(out, clean) > psnr(noisy, clean) + 3
    # a per-image (B,) sigma and a constant map are the same noise level
    same = denoise_ffdnet(ffdnet, chw(noisy), torch.full((1, 3, 64, 64), 25 / 255))
    torch.testing.assert_close(hwc(same), out)


def test_ffdnet_odd_sizes_pad_like_the_original(ffdnet: FFDNet, clean: np.ndarray, noisy: np.ndarray):
    crop, target = noisy[:63, :95], clean[:63, :95]
    out = denoise_ffdnet(ffdnet, chw(crop), 25 / 255)
    assert out.shape == (1, 3, 63, 95)
    assert psnr(hwc(out), target) > psnr(crop, target) + 3
    # test_ffdnet_ipol.py: repeat the last row and column, denoise, clamp, crop
    padded = np.concatenate([crop, crop[-1:]], axis=0)
    padded = np.concatenate([padded, padded[:, -1:]], axis=1)
    x = chw(padded)
    with torch.no_grad():
        expected = torch.clamp(x - ffdnet(x, torch.tensor([25 / 255])), 0, 1)[:, :, :63, :95]
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="even"):
        ffdnet(chw(crop), torch.tensor([25 / 255]))


def test_gain_noise_sigma_is_rellies_formula(ffdnet: FFDNet, dark: np.ndarray):
    """Against a literal numpy port of ReLLIE's State_de.reset + step_de (State.py), odd size included."""
    original = dark[:63, :95].transpose(2, 0, 1)[None].copy()
    enhanced = np.clip(original + 0.5 * original * (1 - original), 0, 1).astype(np.float32)
    raw = original * 255
    raw[np.where(raw <= 2)] = 3
    nsigma = (enhanced * 255 - raw) / raw
    nsigma = 0 + (np.max(nsigma) * 2 - 0) * (nsigma - np.min(nsigma)) / (np.max(nsigma) - np.min(nsigma))
    nsigma[np.where(nsigma < 0)] = 0
    nsigma = (nsigma / 255)[:, :, ::2, ::2]

    sigma = gain_noise_sigma(torch.from_numpy(original), torch.from_numpy(enhanced))
    assert sigma.shape == (1, 3, 32, 48)
    torch.testing.assert_close(sigma, torch.from_numpy(nsigma))
    # the map drives the denoiser directly, odd size and all
    assert denoise_ffdnet(ffdnet, torch.from_numpy(enhanced), sigma).shape == (1, 3, 63, 95)


def test_gain_noise_sigma_edge_cases():
    x = torch.full((2, 3, 4, 4), 0.2)
    # no change anywhere: 0 / 0 in the original; here the top of its range, clipped at 0
    assert torch.equal(gain_noise_sigma(x, x), torch.zeros(2, 3, 2, 2))
    # uniform doubling: gain - 1 = 1 everywhere -> 2 / 255
    torch.testing.assert_close(gain_noise_sigma(x, 2 * x), torch.full((2, 3, 2, 2), 2 / 255))
    # each image is rescaled on its own
    y = x.clone()
    y[1, :, 0, 0] = 0.6
    sigma = gain_noise_sigma(x, y)
    assert sigma[0].abs().max() == 0 and sigma[1, :, 0, 0].max() == pytest.approx(4 / 255)


# --- OpenCV and numpy classics ------------------------------------------------------------------------------


def test_nlm_raises_psnr(clean: np.ndarray, noisy: np.ndarray):
    out = nlm_denoise(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(out, clean) > psnr(noisy, clean) + 1.5  # measured 20.8 dB -> 23.4 dB


@pytest.mark.parametrize("method", [histogram_equalization, clahe])
def test_equalisers_brighten(method, dark: np.ndarray):
    out = method(dark)
    assert out.shape == dark.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert mean_luminance(out) > mean_luminance(dark) + 0.1


def test_histogram_equalization_keeps_chroma(dark: np.ndarray):
    def to_ycrcb(im: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.round(im * 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(int)

    before, after = to_ycrcb(dark), to_ycrcb(histogram_equalization(dark))
    # the chroma survives up to the rounding of the YCrCb <-> RGB round trip (and clipping at bright pixels)
    assert np.median(np.abs(after[:, :, 1:] - before[:, :, 1:])) <= 2


def test_gamma_correction(dark: np.ndarray):
    out = gamma_correction(dark)
    assert out.shape == dark.shape and out.dtype == np.float32
    assert mean_luminance(out) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(gamma_correction(dark, 0.5), np.sqrt(dark), rtol=1e-6)
    # black stays black: the search just ends at the range's end
    assert gamma_correction(np.zeros((4, 4, 3), np.float32)).max() == 0
    with pytest.raises(ValueError, match="positive"):
        gamma_correction(dark, 0.0)
