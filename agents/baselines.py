"""Classic low-light baselines to compare the agents with: gamma, histogram equalisation, CLAHE, NLM, Zero-DCE.

Every function takes and returns float32 RGB ``H x W x 3`` numpy images in [0, 1]. The OpenCV ones work on
the uint8 grid (OpenCV's equalisers are 8-bit), so their outputs are quantised to multiples of 1/255.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from agents.zero_dce import ZeroDCE
from rellie_env.images import to_float_rgb

# Rec. 601 luma, the Y of OpenCV's YCrCb (used by histogram_equalization).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
GAMMA_RANGE = (0.05, 20.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(to_float_rgb(image) * 255.0).astype(np.uint8)


def _from_uint8(image: np.ndarray) -> np.ndarray:
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
    ycrcb = cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(ycrcb[:, :, 0])
    return _from_uint8(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB))


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV) of the L channel of Lab.

    :param image: float RGB ``H x W x 3`` in [0, 1].
    :param clip_limit: OpenCV's ``clipLimit``: histogram bins are clipped at this multiple of the mean bin.
    :param tile: the image is split into ``tile x tile`` regions, equalised separately and interpolated.
    :return: float32 RGB in [0, 1].
    """
    lab = cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2Lab)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile, tile)).apply(lab[:, :, 0])
    return _from_uint8(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB))


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
    bgr = cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2BGR)
    out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h_color, template, search)
    return _from_uint8(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))


def zero_dce_enhance(model: ZeroDCE, image: np.ndarray) -> np.ndarray:
    """Enhance one image with Zero-DCE (see :func:`agents.zero_dce.load_zero_dce`).

    :param model: a Zero-DCE network, on any device.
    :param image: float RGB ``H x W x 3`` in [0, 1].
    :return: float32 RGB in [0, 1] (clipped against float rounding).
    """
    device = next(model.parameters()).device
    x = torch.from_numpy(to_float_rgb(image)).permute(2, 0, 1).unsqueeze(0).to(device)
    with torch.inference_mode():
        enhanced, _ = model(x)
    return np.clip(enhanced[0].permute(1, 2, 0).cpu().numpy(), 0.0, 1.0)
