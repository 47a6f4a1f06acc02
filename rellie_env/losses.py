"""Non-reference losses of ReLLIE (from Zero-DCE), in torch, one value per image.

Each loss takes images ``(B, 3, H, W)`` in [0, 1] and returns a ``(B,)`` tensor: the released code
averages over the batch, we keep one value per image so that a batch of B images and B single
environments score alike. The ``*_map`` variants give the local terms behind each loss, whose mean
is the loss; they build the per-pixel reward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _neighbour_differences(x: torch.Tensor) -> torch.Tensor:
    """Differences to the left, right, upper and lower neighbour, zero padded (Zero-DCE's 3x3 kernels)."""
    p = F.pad(x, (1, 1, 1, 1))
    return torch.stack(
        (
            x - p[..., 1:-1, :-2],  # left
            x - p[..., 1:-1, 2:],  # right
            x - p[..., :-2, 1:-1],  # up
            x - p[..., 2:, 1:-1],  # down
        )
    )


def grey_blocks(x: torch.Tensor, block: int, grey: torch.Tensor | None = None) -> torch.Tensor:
    """Channel mean of ``x`` averaged over ``block x block`` blocks: ``(B, 1, H // block, W // block)``.

    ``grey`` is ``x.mean(1, keepdim=True)`` when the caller already has it (it is shared between terms).
    """
    return F.avg_pool2d(x.mean(1, keepdim=True) if grey is None else grey, block)


def spatial_consistency_map(
    enhanced: torch.Tensor,
    original: torch.Tensor,
    block: int = 4,
    original_blocks: torch.Tensor | None = None,
    grey: torch.Tensor | None = None,
) -> torch.Tensor:
    """Zero-DCE's L_spa per ``block x block`` region: ``(B, 1, H // block, W // block)``.

    Both images are averaged over channels and pooled in blocks; the loss is the squared change of each
    block's difference to its four neighbours, so it charges any change of local contrast.
    ``original_blocks`` (``grey_blocks(original, block)``) saves recomputing it at every step of an episode.
    """
    if original_blocks is None:
        original_blocks = grey_blocks(original, block)
    pooled_enh = grey_blocks(enhanced, block, grey)
    return (_neighbour_differences(original_blocks) - _neighbour_differences(pooled_enh)).square_().sum(0)


def spatial_consistency_loss(enhanced: torch.Tensor, original: torch.Tensor, block: int = 4) -> torch.Tensor:
    """Spatial consistency L_spa of ``enhanced`` against the episode's input ``original``: ``(B,)``."""
    return spatial_consistency_map(enhanced, original, block).mean((1, 2, 3))


def exposure_map(
    x: torch.Tensor, patch: int = 16, level: float | torch.Tensor = 0.6, grey: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distance of each ``patch x patch`` mean intensity to ``level`` (a number, or one per image
    ``(B,)``): ``(B, 1, H // p, W // p)``."""
    if isinstance(level, torch.Tensor):
        level = level.view(-1, 1, 1, 1)
    return (grey_blocks(x, patch, grey) - level).square_()


def exposure_loss(x: torch.Tensor, patch: int = 16, level: float = 0.6) -> torch.Tensor:
    """Exposure control L_exp: mean over patches of ``(patch mean - level)^2``: ``(B,)``."""
    return exposure_map(x, patch, level).mean((1, 2, 3))


def color_constancy_loss(x: torch.Tensor) -> torch.Tensor:
    """Grey-world colour constancy L_col (Zero-DCE): ``sqrt(sum over channel pairs of (m_p - m_q)^4)``.

    ``m_c`` is the mean of channel c over the image; the loss is zero for a grey-balanced image.
    """
    m = x.mean((2, 3))
    d_rg = (m[:, 0] - m[:, 1]).pow(2)
    d_rb = (m[:, 0] - m[:, 2]).pow(2)
    d_gb = (m[:, 2] - m[:, 1]).pow(2)
    total = d_rg.pow(2) + d_rb.pow(2) + d_gb.pow(2)
    # sqrt's gradient at 0 is infinite (NaN in the difference rewards of a grey photo): there, 0 and no gradient
    grey = total == 0
    return torch.where(grey, 0.0, torch.where(grey, 1.0, total).sqrt())


def color_ratio_map(enhanced: torch.Tensor, original: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-pixel change of the channel ratios against the input: ``(B, 1, H, W)``.

    ReLLIE's 2022 code keeps each pixel's channel ratios (R/G, R/B, G/B) as they were in the input and
    divides by zero on black pixels; here every denominator is offset by ``eps``, so black pixels are safe.
    """

    def ratios(x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0:1] + eps, x[:, 1:2] + eps, x[:, 2:3] + eps
        return torch.cat((r / g, r / b, g / b), 1)

    return (ratios(enhanced) - ratios(original)).abs().mean(1, keepdim=True)


def color_ratio_loss(enhanced: torch.Tensor, original: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean absolute change of the channel ratios against the input (safe 2022 colour term): ``(B,)``."""
    return color_ratio_map(enhanced, original, eps).mean((1, 2, 3))


def smoothness_map(alpha: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    """Per-pixel share of :func:`smoothness_loss`: ``(B, 1, H, W)``; its mean over pixels is the loss.

    Pixel ``(i, j)`` carries the squared differences to its lower and right neighbours, summed over channels
    (``per_channel``: kept apart, ``(B, 3, H, W)``, each channel's share).
    """
    _, _, h, w = alpha.shape
    dh = F.pad((alpha[:, :, 1:, :] - alpha[:, :, :-1, :]).pow(2), (0, 0, 0, 1))
    dw = F.pad((alpha[:, :, :, 1:] - alpha[:, :, :, :-1]).pow(2), (0, 1, 0, 0))
    if not per_channel:
        dh, dw = dh.sum(1, keepdim=True), dw.sum(1, keepdim=True)
    # Zero-DCE normalises by the number of vertical and horizontal pairs; scaling by H*W/pairs makes the
    # mean of this map equal to that normalised total.
    return 2.0 * (dh * (h * w / max((h - 1) * w, 1)) + dw * (h * w / max(h * (w - 1), 1)))


def smoothness_loss(alpha: torch.Tensor) -> torch.Tensor:
    """Illumination smoothness L_TV of the alpha maps (Zero-DCE's TV loss, per image): ``(B,)``."""
    _, _, h, w = alpha.shape
    h_tv = (alpha[:, :, 1:, :] - alpha[:, :, :-1, :]).square_().sum((1, 2, 3))
    w_tv = (alpha[:, :, :, 1:] - alpha[:, :, :, :-1]).square_().sum((1, 2, 3))
    return 2.0 * (h_tv / max((h - 1) * w, 1) + w_tv / max(h * (w - 1), 1))


LOG_EPS = 1.0 / 255.0  # one 8-bit level: keeps the log of black pixels finite
# Two statistics of log(luma + 1/255) (luma: the mean of R, G, B) that natural, well-exposed photos share:
# its mean over the pixels (-1.068: a geometric-mean brightness of 0.344) and its mean over the brightest
# 0.5 % of them (the white point); here their averages over BSDS500's 200 training photos.
NATURAL_EXPOSURE, NATURAL_LOG_WHITE = 0.344, -0.112
WHITE_FRACTION = 0.005


def log_luma(x: torch.Tensor) -> torch.Tensor:
    """``log(mean over channels + 1/255)``: ``(B, H, W)``."""
    return x.mean(1).add(LOG_EPS).log()


def brightness_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of :func:`log_luma` over the pixels and over the brightest :data:`WHITE_FRACTION` of them:
    ``(B,)`` each."""
    flat = log_luma(x).flatten(1)
    k = max(1, round(flat.shape[1] * WHITE_FRACTION))
    return flat.mean(1), flat.topk(k, dim=1, sorted=False).values.mean(1)


def statistics_loss(x: torch.Tensor, exposure: float | torch.Tensor = NATURAL_EXPOSURE,
                    log_white: float = NATURAL_LOG_WHITE) -> torch.Tensor:
    """How far the image's brightness lies from natural photos': ``(B,)``, the squared distances of its
    :func:`brightness_statistics` to ``log(exposure)`` (a number, or one per image ``(B,)``) and ``log_white``.

    A darkened photo ``y = g x^gamma`` has ``log y = log g + gamma log x``: its log-brightness is the photo's,
    shifted and stretched. Natural photos have near-white highlights and a typical mean brightness; asking
    for both undoes the shift and the stretch, where one exposure level E pins only one of them.
    """
    mean, white = brightness_statistics(x)
    log_mean = exposure.log() if isinstance(exposure, torch.Tensor) else math.log(exposure)
    return (mean - log_mean).square() + (white - log_white).square()


def chroma_map(enhanced: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per pixel, how far the colour departs from a power law: ``(B, 1, H, W)``.

    A tone curve ``x -> x^p`` scales each pixel's log-chromaticity (its channels' logs less their mean) by p;
    with ``p = log(luma_out) / log(luma_in)``, the pixel's own brightening as a power, this is the squared
    distance of the output's log-chromaticity to p times the input's, summed over channels. So a pixel may
    brighten as it likes, but its colour must follow as under a camera's tone curve: no cast is added, and
    the saturation a power-law darkening adds is taken out again.
    """
    lin, lout = (x.mean(1, keepdim=True).add(LOG_EPS).log() for x in (original, enhanced))
    power = (lout / lin.clamp(max=-LOG_EPS)).detach()  # both logs are negative below 1
    cin, cout = (x.add(LOG_EPS).log() for x in (original, enhanced))
    cin, cout = cin - cin.mean(1, keepdim=True), cout - cout.mean(1, keepdim=True)
    return (cout - power * cin).square().sum(1, keepdim=True)


def chroma_loss(enhanced: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Mean of :func:`chroma_map` over the pixels: ``(B,)``."""
    return chroma_map(enhanced, original).mean((1, 2, 3))


@dataclass(frozen=True)
class LossWeights:
    """Weights and settings of the non-reference loss (defaults: as released).

    :param spatial: weight of spatial consistency against the episode's input.
    :param exposure: weight of the exposure term.
    :param color: weight of the colour term.
    :param smoothness: weight of the smoothness of the alpha maps (before channel coupling).
    :param exposure_level: the target brightness E: the mean intensity of the exposure term's patches, and
        the geometric mean brightness (``exp`` of the mean log-brightness) of the statistics term.
    :param exposure_patch: patch size of the exposure term.
    :param spatial_block: block size of the spatial consistency term.
    :param color_mode: ``"grey-world"`` (July 2021 code, weight 50) or ``"ratio"`` (2022 code, weight 20).
    :param statistics: weight of :func:`statistics_loss` (0 as released).
    :param chroma: weight of :func:`chroma_loss` (0 as released).
    :param log_white: the log-brightness of the brightest pixels :func:`statistics_loss` asks for.
    """

    spatial: float = 1.0
    exposure: float = 80.0
    color: float = 50.0
    smoothness: float = 200.0
    exposure_level: float = 0.6
    exposure_patch: int = 16
    spatial_block: int = 4
    color_mode: str = "grey-world"
    statistics: float = 0.0
    chroma: float = 0.0
    log_white: float = NATURAL_LOG_WHITE

    def __post_init__(self) -> None:
        if self.color_mode not in ("grey-world", "ratio"):
            raise ValueError(f"color_mode must be 'grey-world' or 'ratio', got {self.color_mode!r}")
        for name in ("spatial", "exposure", "color", "smoothness", "statistics", "chroma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"the {name} weight must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.log_white, (int, float)) and math.log(LOG_EPS) < self.log_white <= math.log(1 + LOG_EPS)):
            raise ValueError(f"log_white must lie in (log(1/255), log(1 + 1/255)], got {self.log_white!r}")
        if not (isinstance(self.exposure_level, (int, float)) and 0.0 < self.exposure_level < 1.0):
            raise ValueError(f"exposure_level must lie in (0, 1), got {self.exposure_level!r}")
        for name in ("exposure_patch", "spatial_block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


LOSS_TERMS = ("spatial", "exposure", "color", "statistics", "chroma", "smoothness")
# The terms of an image alone (no alpha maps): the score evaluation reports and the rewards' potential.
NO_REFERENCE_TERMS = ("spatial", "exposure", "color", "statistics", "chroma")


def loss_terms(
    image: torch.Tensor,
    original: torch.Tensor,
    alpha: torch.Tensor | None,
    weights: LossWeights,
    original_blocks: torch.Tensor | None = None,
    exposure: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of each image, ``{name: (B,)}`` (:data:`LOSS_TERMS`); smoothness is 0
    without ``alpha``, and the terms released ReLLIE lacks (statistics, chroma) are 0 unless weighted.

    ``original_blocks`` is ``grey_blocks(original, weights.spatial_block)``, when the caller keeps it;
    ``exposure`` ``(B,)``, each image's own target brightness E, in place of ``weights.exposure_level``.
    """
    level = weights.exposure_level if exposure is None else exposure
    if weights.color_mode == "grey-world":
        color = color_constancy_loss(image)
    else:
        color = color_ratio_loss(image, original)
    grey = image.mean(1, keepdim=True)
    spatial = spatial_consistency_map(image, original, weights.spatial_block, original_blocks, grey)
    exposure_term = exposure_map(image, weights.exposure_patch, level, grey)
    zero = torch.zeros_like(color)
    return {
        "spatial": spatial.mean((1, 2, 3)),
        "exposure": exposure_term.mean((1, 2, 3)),
        "color": color,
        "statistics": statistics_loss(image, level, weights.log_white) if weights.statistics else zero,
        "chroma": chroma_loss(image, original) if weights.chroma else zero,
        "smoothness": smoothness_loss(alpha) if alpha is not None else zero,
    }


def weighted_sum(terms: dict[str, torch.Tensor], weights: LossWeights, names=LOSS_TERMS) -> torch.Tensor:
    """``sum(weight_k * term_k)`` over the named terms."""
    return sum(getattr(weights, k) * terms[k] for k in names)


def image_loss(
    image: torch.Tensor,
    original: torch.Tensor,
    weights: LossWeights = LossWeights(),
    original_blocks: torch.Tensor | None = None,
    exposure: torch.Tensor | None = None,
) -> torch.Tensor:
    """Non-reference loss of an image alone (spatial + exposure + colour, no alpha maps): ``(B,)``.

    This is the score evaluation reports and the potential whose drop the ``"delta"`` rewards pay; lower is
    better. ``original_blocks`` and ``exposure`` as for :func:`loss_terms`.
    """
    terms = loss_terms(image, original, None, weights, original_blocks, exposure)
    return weighted_sum(terms, weights, NO_REFERENCE_TERMS)


def _upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of a pooled map to ``size``; rows/columns a pool dropped take the edge."""
    h, w = size
    ph, pw = h // m.shape[-2], w // m.shape[-1]
    up = m.repeat_interleave(ph, -2).repeat_interleave(pw, -1)
    return F.pad(up, (0, w - up.shape[-1], 0, h - up.shape[-2]), mode="replicate")


def loss_map(image: torch.Tensor, original: torch.Tensor, alpha: torch.Tensor | None, weights: LossWeights,
             original_blocks: torch.Tensor | None = None, exposure: torch.Tensor | None = None) -> torch.Tensor:
    """Local version of the weighted loss, ``(B, H, W)``: exposure per patch, spatial consistency per
    block, smoothness and chroma per pixel, colour per image (grey-world) or per pixel (ratio), statistics per
    image."""
    b, _, h, w = image.shape
    spatial = spatial_consistency_map(image, original, weights.spatial_block, original_blocks)
    total = weights.spatial * _upsample(spatial, (h, w))
    level = weights.exposure_level if exposure is None else exposure
    total = total + weights.exposure * _upsample(exposure_map(image, weights.exposure_patch, level), (h, w))
    if weights.color_mode == "grey-world":
        total = total + weights.color * color_constancy_loss(image).view(b, 1, 1, 1)
    else:
        total = total + weights.color * color_ratio_map(image, original)
    if weights.statistics:
        total = total + weights.statistics * statistics_loss(image, level, weights.log_white).view(b, 1, 1, 1)
    if weights.chroma:
        total = total + weights.chroma * chroma_map(image, original)
    if alpha is not None:
        total = total + weights.smoothness * smoothness_map(alpha)
    return total[:, 0]
