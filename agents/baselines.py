"""Baselines to compare the agents with: gamma, histogram equalisation, CLAHE, NLM, Zero-DCE, and the best
constant policy (one action triple at every pixel and step, searched exhaustively).

The enhancers take and return float32 RGB ``H x W x 3`` numpy images in [0, 1]. The OpenCV ones work on
the uint8 grid (OpenCV's equalisers are 8-bit), so their outputs are quantised to multiples of 1/255.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from agents.zero_dce import ZeroDCE
from rellie_env.curves import ActionSet
from rellie_env.images import to_float_rgb, to_hwc, to_nchw
from rellie_env.losses import LossWeights, image_loss

# Rec. 601 luma, the Y of OpenCV's YCrCb (used by histogram_equalization).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
GAMMA_RANGE = (0.05, 20.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] on the 8-bit grid (rounded), as a saved file holds it."""
    return np.round(to_float_rgb(image) * 255.0).astype(np.uint8)


def from_uint8(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def mean_luminance(image: np.ndarray) -> float:
    """Mean Rec. 601 luma of an RGB image in [0, 1].

    :param image: float RGB ``H x W x 3`` in [0, 1].
    """
    return float((to_float_rgb(image) @ LUMA).mean())


def gamma_correction(image: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Per-channel power law ``image ** gamma`` (``gamma < 1`` brightens).

    With ``gamma=None`` the gamma is found by bisection (on log-gamma, within ``GAMMA_RANGE``) so that the mean
    luma of the *result* is 0.5, measured on a strided sample of at most ~256 x 256 pixels. The closed form
    ``log 0.5 / log(mean luma)`` falls short when brightening, as ``mean(x ** g) <= mean(x) ** g`` for ``g < 1``
    (0.40 instead of 0.5 on a darkened photo). On a black image no gamma can help; the search ends at the
    range's end and the image stays black.

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :param gamma: the exponent, positive; ``None`` picks it as above.
    :return: the corrected image, float32 RGB in [0, 1].
    """
    x = to_float_rgb(image)
    if gamma is None:
        # A strided sample of at most ~256 x 256 pixels keeps the 30 trials cheap on large photos.
        step = max(1, int(np.ceil(max(x.shape[:2]) / 256)))
        sample = x[::step, ::step].astype(np.float64)
        lo, hi = np.log(GAMMA_RANGE[0]), np.log(GAMMA_RANGE[1])
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            # Mean luma falls as gamma grows (for values in (0, 1)): too bright means the gamma is too small.
            if float((sample ** np.exp(mid) @ LUMA).mean()) > 0.5:
                lo = mid
            else:
                hi = mid
        gamma = float(np.exp(0.5 * (lo + hi)))
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    return np.power(x, np.float32(gamma))


def histogram_equalization(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of the luma only (Y of OpenCV's YCrCb), keeping the chroma.

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :return: float32 RGB in [0, 1].
    """
    ycrcb = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    return from_uint8(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB))


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of the L channel of Lab.

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :param clip_limit: OpenCV's ``clipLimit``: histogram bins are clipped at this multiple of the mean bin.
    :param tile: the image is split into ``tile x tile`` regions, equalised separately and interpolated.
    :return: float32 RGB in [0, 1].
    """
    lab = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2Lab)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile, tile)).apply(lab[:, :, 0])
    return from_uint8(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB))


def nlm_denoise(
    image: np.ndarray, h: float = 10.0, h_color: float = 10.0, template: int = 7, search: int = 21
) -> np.ndarray:
    """Non-local means denoising (OpenCV ``fastNlMeansDenoisingColored``, which filters L and ab of Lab apart).

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :param h: filter strength for luminance, on the 0..255 scale (about the noise sigma there; 10 is OpenCV's
        tutorial value and suits sigma ~ 10-25).
    :param h_color: the same for the colour components.
    :param template: side of the compared patches (odd).
    :param search: side of the window searched for similar patches (odd).
    :return: float32 RGB in [0, 1].
    """
    # OpenCV's colour NLM converts BGR to Lab inside: give it BGR so that L is the true lightness.
    bgr = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h_color, template, search)
    return from_uint8(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))


def zero_dce_enhance(model: ZeroDCE, image: np.ndarray) -> np.ndarray:
    """Enhance one image with Zero-DCE (see :func:`agents.zero_dce.load_zero_dce`).

    :param model: a Zero-DCE network, on any device.
    :param image: float RGB ``H x W x 3`` in [0, 1].
    :return: float32 RGB in [0, 1] (clipped against float rounding).
    """
    device = next(model.parameters()).device
    with torch.inference_mode():
        enhanced, _ = model(to_nchw(to_float_rgb(image)).to(device))
    return np.clip(to_hwc(enhanced), 0.0, 1.0)


@torch.inference_mode()
def constant_policy_losses(
    images: torch.Tensor,
    steps: int = 6,
    action_set: ActionSet = ActionSet(),
    weights: LossWeights = LossWeights(),
    per_channel: bool = True,
) -> torch.Tensor:
    """Mean non-reference loss on ``images`` ``(N, 3, H, W)`` of every constant policy (the same action
    triple at every pixel and step): ``(n, n, n)``, indexed by the R, G, B actions.

    Made fast by two facts: a channel's result depends only on its own action and the lead channel's, so
    ``n_actions`` batched runs give every channel of every triple; and when the image sides are multiples of
    the spatial block (and the exposure patch is too), the loss of the block-averaged images with a block of
    1 equals the loss of the full images, so the triples are scored on images ``block**2`` times smaller.

    :param per_channel: score all triples (else only equal actions on the three channels; the rest ``inf``).
    """
    n, lead = action_set.n_actions, action_set.lead_channel
    count, _, h, w = images.shape
    block = weights.spatial_block
    f = block if h % block == 0 and w % block == 0 and weights.exposure_patch % block == 0 else 1
    scaled = replace(weights, spatial_block=block // f, exposure_patch=weights.exposure_patch // f)
    original = F.avg_pool2d(images, f)

    def run(own: torch.Tensor) -> torch.Tensor:
        """Pooled results ``(n, N, 3, h, w)`` of the n constant triples ``own`` ``(n, 3)``."""
        x = images.repeat(n, 1, 1, 1)
        actions = own.to(torch.uint8).view(n, 1, 3, 1, 1).expand(n, count, 3, h, w).reshape(x.shape)
        for _ in range(steps):
            x, _ = action_set.step(x, actions)
        return F.avg_pool2d(x, f).view(n, count, 3, *original.shape[2:])

    equal = torch.arange(n).view(n, 1).expand(n, 3)
    lead_c = 2 if lead is None else lead
    o1, o2 = [c for c in range(3) if c != lead_c]
    uncoupled = run(equal) if lead is None else None
    table = torch.full((n, n, n), float("inf"))
    for j in range(n):  # the lead channel's action
        if lead is None:
            results, lead_channel = uncoupled, uncoupled[j, :, lead_c]
        else:
            own = equal.clone()
            own[:, lead_c] = j
            results = run(own)  # results[i]: non-lead channels with own action i, lead action j
            lead_channel = results[0, :, lead_c]
        candidates = torch.arange(n) if per_channel else torch.tensor([j])
        for k in candidates.tolist():  # the second channel's action; the first varies in a batch
            m = len(candidates)
            x = torch.empty(m, count, 3, *original.shape[2:])
            x[:, :, o1] = results[candidates, :, o1]
            x[:, :, o2] = results[k, :, o2]
            x[:, :, lead_c] = lead_channel
            losses = image_loss(x.flatten(0, 1), original.repeat(m, 1, 1, 1), scaled).view(m, count).mean(1)
            index: list = [0, 0, 0]
            index[o1], index[o2], index[lead_c] = candidates, k, j
            table[tuple(index)] = losses
    return table


def best_constant_policy(
    images: torch.Tensor | Sequence[torch.Tensor],
    steps: int = 6,
    action_set: ActionSet = ActionSet(),
    weights: LossWeights = LossWeights(),
    per_channel: bool = True,
) -> tuple[tuple[int, int, int], float]:
    """The best constant policy: the same action triple at every pixel and step, best over the action set
    (an exhaustive search, :func:`constant_policy_losses`).

    :param images: ``(N, 3, H, W)`` inputs, or a sequence of such batches of different sizes (whole photos);
        every image weighs the same in the mean.
    :param per_channel: search all triples (else only equal actions on the three channels).
    :return: the best triple (RGB) and its mean non-reference loss on ``images``.
    """
    batches = [images] if isinstance(images, torch.Tensor) else list(images)
    total = sum(constant_policy_losses(b, steps, action_set, weights, per_channel) * len(b) for b in batches)
    table = total / sum(len(b) for b in batches)
    best = int(table.argmin())
    return tuple(int(i) for i in np.unravel_index(best, table.shape)), float(table.flatten()[best])


@torch.inference_mode()
def constant_policy(
    image: np.ndarray, triple: tuple[int, int, int], steps: int = 6, action_set: ActionSet = ActionSet()
) -> np.ndarray:
    """Enhance an image with a constant policy: the action ``triple`` (R, G, B) at every pixel, ``steps`` times.

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :return: float32 RGB in [0, 1].
    """
    x = to_nchw(to_float_rgb(image))
    actions = torch.tensor(triple, dtype=torch.uint8).view(1, 3, 1, 1).expand(x.shape)
    for _ in range(steps):
        x, _ = action_set.step(x, actions)
    return to_hwc(x)
