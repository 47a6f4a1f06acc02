"""Full-reference image quality in torch: PSNR and SSIM on uint8-quantised RGB, batched, any device."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to the uint8 grid (as float64 values 0..255), as saved files would hold them."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.float64)


def psnr(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of ``(B, 3, H, W)`` images in [0, 1] after uint8 quantisation: ``(B,)``."""
    mse = (quantize(x) - quantize(target)).pow(2).mean((1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def _gaussian_window(sigma: float, device: torch.device) -> torch.Tensor:
    radius = int(3.5 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return g


def ssim(x: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of ``(B, 3, H, W)`` images after uint8 quantisation, averaged over channels: ``(B,)``.

    As MATLAB's ``ssim`` and ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255)``: an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, the mean taken over the pixels whose window lies inside the image.
    """
    a, b = quantize(x), quantize(target)
    g = _gaussian_window(sigma, a.device)
    c = a.shape[1]

    def blur(v: torch.Tensor) -> torch.Tensor:
        v = F.conv2d(v, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(v, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean((1, 2, 3))
