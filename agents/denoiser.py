"""The project's own low-light denoiser: a small residual CNN that cleans the dark input before enhancement.

Brightening multiplies a low-light photo's sensor noise, so it is removed first, where it is still small and
has its simplest form: Poisson-Gaussian, ``variance = a * signal + b^2``. The network sees the square root of
the image, where that noise is nearly even (the square root stabilises Poisson noise's variance: about
``a / 4``), on its four 2x2 sub-images at half resolution (as FFDNet), and predicts the noise there; it is
blind (no noise level given) over the range it was trained on. It is trained by :func:`train_denoiser` on
clean photos darkened by a wide :class:`~rellie_env.images.Degradation` with the noise-free darkening as the
target (``python -m agents.cli.denoiser``); the shipped weights are ``agents/models/denoiser.pt``.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rellie_env.images import Augmentation, Degradation, ImageSet, stack_nchw

DEFAULT_DENOISER = Path(__file__).resolve().parent / "models" / "denoiser.pt"
WEIGHTS_FORMAT = "rellie-denoiser-v1"
# The training darkening: wider than the validation set's model on every axis, so that the network also
# meets real low light it was not built for.
TRAINING_DEGRADATION = Degradation(gamma=(1.4, 3.0), gain=(0.1, 0.8), color_cast=0.15, shot_noise=(2e-4, 3e-3),
                                   read_noise=2.0 / 255)


class LowLightDenoiser(nn.Module):
    """DnCNN on the 2x2 sub-images of ``sqrt(x)``: ``layers`` 3x3 convolutions of ``features`` channels, batch
    normalisation between them (it speeds training up; in evaluation it is a fixed affine map).

    :param features: channels of the hidden layers.
    :param layers: convolutions in all.
    """

    def __init__(self, features: int = 48, layers: int = 8) -> None:
        super().__init__()
        self.features, self.layers = features, layers
        convs: list[nn.Module] = [nn.Conv2d(12, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features),
                      nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(features, 12, 3, padding=1))
        self.net = nn.Sequential(*convs)

    @property
    def radius(self) -> int:
        """How far (in full-resolution pixels) an output depends on the input: 2 per half-resolution conv."""
        return 2 * self.layers

    def root(self, x: torch.Tensor) -> torch.Tensor:
        """The square root of the denoised images (the domain the network works and is trained in)."""
        h, w = x.shape[-2:]
        root = F.pad(x.clamp(0, 1).sqrt(), (0, w % 2, 0, h % 2), mode="replicate")
        sub = F.pixel_unshuffle(root, 2)
        return F.pixel_shuffle(sub - self.net(sub), 2)[..., :h, :w].clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise ``(B, 3, H, W)`` images in [0, 1] (any size; an odd side is padded by replication)."""
        return self.root(x).square()


def save_denoiser(model: LowLightDenoiser, path: str | os.PathLike) -> Path:
    from agents.checkpoints import atomic_write

    payload = {"format": WEIGHTS_FORMAT, "features": model.features, "layers": model.layers,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_denoiser(path: str | os.PathLike = DEFAULT_DENOISER, device: str | torch.device = "cpu") -> LowLightDenoiser:
    """Load denoiser weights written by :func:`save_denoiser` (default: the shipped ones); ``ValueError`` naming
    the file when it is missing or not such weights."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != WEIGHTS_FORMAT:
            raise ValueError("not rellie denoiser weights")
        model = LowLightDenoiser(payload["features"], payload["layers"])
        model.load_state_dict(payload["state_dict"])
    except FileNotFoundError:
        raise ValueError(f"denoiser weights {os.fspath(path)!r} do not exist") from None
    except Exception as exc:  # torch and pickle raise many types on a bad file
        raise ValueError(f"{os.fspath(path)!r} could not be read as denoiser weights: {exc}") from None
    return model.to(device).eval()


def training_pairs(source: ImageSet, crop: Augmentation, degradation: Degradation, rng: np.random.Generator,
                   n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (noisy, noise-free) darkened crops of the clean photos in ``source``: ``(n, 3, c, c)`` each."""
    noisy, clean = [], []
    for _ in range(n):
        photo, _ = crop(rng, source.target(source.draw(rng)))
        low, signal = degradation.apply(photo, rng, with_signal=True)
        noisy.append(low)
        clean.append(signal)
    return stack_nchw(noisy), stack_nchw(clean)


def train_denoiser(
    source: ImageSet,
    iterations: int = 4000,
    batch: int = 16,
    crop_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    model: LowLightDenoiser | None = None,
    degradation: Degradation = TRAINING_DEGRADATION,
    log: Callable[[int, float], None] | None = None,
) -> LowLightDenoiser:
    """Train a denoiser on clean photos (``source``'s targets) darkened by ``degradation``.

    The loss is the L1 distance in the square-root domain (about the brightened picture's, where darks count
    more than in the dark input), with Adam and a cosine decay of the learning rate.

    :param log: called with ``(iteration, mean loss)`` every 100 iterations.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = LowLightDenoiser() if model is None else model
    crop = Augmentation(crop_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    model.train()
    running = []
    for it in range(1, iterations + 1):
        noisy, clean = training_pairs(source, crop, degradation, rng, batch)
        loss = (model.root(noisy) - clean.sqrt()).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if log is not None and it % 100 == 0:
            log(it, float(np.mean(running)))
            running = []
    return model.eval()
