"""Enhancement with a trained policy: greedy steps along the curve, tile by tile, at any resolution.

:func:`enhance` is the enhancement of the package (used by ``evaluate.py`` and ``make demo``): the greedy
policy on a whole photo of any size at full resolution, with bounded memory (the network runs tile by tile,
each tile with a halo of the network's receptive radius, so the result equals the untiled one), an optional
fast mode and an optional final denoising (the project's guided filter, non-local means, or ReLLIE's FFDNet).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable

import cv2
import numpy as np
import torch

from agents.baselines import nlm_denoise
from agents.denoiser import estimate_noise, guided_denoise
from agents.ffdnet import CONV_LAYERS, FFDNet, denoise_ffdnet, gain_noise_sigma, load_ffdnet
from agents.policies import PixelActorCriticPolicy
from rellie_env.cpu import MALLOC
from rellie_env.curves import ActionSet, curve_step
from rellie_env.images import to_float_rgb, to_hwc, to_nchw

DENOISERS = ("none", "guided", "nlm", "ffdnet")
# Fast mode's default: the policy sees a copy with sides scaled by 1/5 (1/25 of the pixels): then fast mode
# takes ~0.7x Zero-DCE's time (at 1/4 it took as long) and stays > 45 dB from full mode with the released agent.
FAST_SIZE = 0.2
# The smallest side of fast mode's copy (one exposure patch is 16 px; below 32 px the policy sees little).
FAST_MIN_SIDE = 32


@torch.inference_mode()
def greedy_rollout(
    policy: PixelActorCriticPolicy, images: torch.Tensor, steps: int = 6, action_set: ActionSet | None = None,
    exposure: float | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply the policy's deterministic action map (:meth:`~PixelActorCriticPolicy.greedy_actions`) ``steps``
    times to ``(B, 3, H, W)`` images, untiled (:func:`enhance` is the tiled, full-resolution version).

    :param action_set: default: the policy's own (``policy.action_set``).
    :param exposure: the target brightness E, for a policy trained with a range of them (:meth:`observe`).
    :return: the final images and the alpha maps (before coupling) of each step.
    """
    action_set = policy.action_set if action_set is None else action_set
    x, alphas = images, []
    for _ in range(steps):
        x, alpha = action_set.step(x, policy.greedy_actions(policy.observe(x, exposure)))
        alphas.append(alpha)
    return x, alphas


def receptive_radius(policy: PixelActorCriticPolicy) -> int:
    """How far (in pixels) an action of ``policy`` looks: first conv 1 + trunk and branch dilations + head 1.

    16 for the released network (1 + 2 + 3 + 4 + 3 + 2 + 1): an action depends only on the input within
    16 pixels, so a tile with a halo of 16 pixels gives the same actions as the whole image.
    """
    return 1 + sum(policy.trunk_dilations) + sum(policy.branch_dilations) + 1


def check_tile(tile: int, halo: int) -> None:
    """A tile must be at least twice its halo: smaller tiles would spend nearly all their work on the halo."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 2 * halo:
        raise ValueError(f"tile must be an integer of at least {2 * halo} (twice the network's receptive radius "
                         f"{halo}), got {tile!r}")


def _spans(n: int, tile: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """Split ``range(n)`` into near-equal spans of at most ``tile`` (starts multiples of ``align``):
    ``(start, stop, padded_start, padded_stop)``. Every padded span has the same length, ``size + 2 halo``
    (or ``n``): it holds its span and ``halo`` more on each side, or more on one side where the other
    reaches ``0`` or ``n``. Equal lengths make every tile allocate the same tensors, which the memory
    allocator then reuses from tile to tile."""
    count = max(1, math.ceil(n / tile))
    size = math.ceil(n / count / align) * align
    padded = min(n, size + 2 * halo)
    spans = []
    for s in range(0, n, size):
        stop = min(n, s + size)
        start = min(max(0, s - halo), n - padded) // align * align
        spans.append((s, stop, start, max(min(n, start + padded), min(n, stop + halo))))
    return spans


def tiles(h: int, w: int, tile: int, halo: int, align: int = 1) -> list[tuple[slice, slice, slice, slice]]:
    """Tiles of an ``h x w`` image for a network of receptive radius ``halo``.

    An image of at most ``tile**2`` pixels is one tile; a larger one is cut into near-equal tiles of at most
    ``tile x tile`` pixels. Each comes with its padded region, which holds the tile and at least ``halo``
    pixels on every side that is not the image border (never beyond the border: there the network's own
    zero padding sees the true border), so the tiled result equals the untiled one.

    :param align: tile starts (and the halo) are multiples of this (2 for FFDNet's 2x2 sub-images).
    :return: ``(rows, cols, padded_rows, padded_cols)`` slices per tile; the tile's place inside the padded
        region is ``rows.start - padded_rows.start`` etc.
    """
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    halo = math.ceil(halo / align) * align
    if h * w <= tile * tile:
        return [(slice(0, h), slice(0, w), slice(0, h), slice(0, w))]
    return [
        (slice(y0, y1), slice(x0, x1), slice(py0, py1), slice(px0, px1))
        for y0, y1, py0, py1 in _spans(h, tile, halo, align)
        for x0, x1, px0, px1 in _spans(w, tile, halo, align)
    ]


def _inner(rows: slice, cols: slice, padded_rows: slice, padded_cols: slice) -> tuple[slice, slice]:
    """Where a tile lies inside its padded region."""
    y, x = rows.start - padded_rows.start, cols.start - padded_cols.start
    return slice(y, y + rows.stop - rows.start), slice(x, x + cols.stop - cols.start)


@torch.inference_mode()
def policy_actions(
    policy: PixelActorCriticPolicy, image: torch.Tensor, tile: int = 512, halo: int | None = None,
    exposure: float | None = None,
) -> torch.Tensor:
    """The greedy action map of ``(B, 3, H, W)`` images, computed tile by tile.

    Only the policy path runs (``policy.greedy_actions(x)``: the most likely action,
    ``policy.distribution(x).mode()``, or for a policy with ``deterministic_action="mean"`` the action
    nearest to the expected curve strength), on each tile grown by ``halo`` pixels (except at the image
    border), in channels-last layout (the faster one for these convolutions on CPU; the policy's weights are
    put in that layout too).

    :param policy: the policy, on any device; the tiles move there and the actions come back.
    :param image: ``(B, 3, H, W)`` in [0, 1], any layout.
    :param tile: tile side; images of at most ``tile**2`` pixels run in one piece.
    :param halo: pixels of context around each tile; default (and the least for an exact result):
        :func:`receptive_radius`.
    :param exposure: the target brightness E, for a policy trained with a range of them (:meth:`observe`).
    :return: the action map ``(B, heads, H, W)``, uint8, on ``image``'s device.
    """
    halo = receptive_radius(policy) if halo is None else halo
    # Weights channels-last too: a convolution's output takes its weights' layout, so with channels-first
    # weights every layer after the first ran channels-first, 1.2-1.5x slower (same values, either layout).
    # Outside inference mode, so that the policy's parameters stay ordinary tensors that can still train.
    with torch.inference_mode(False):
        policy.to(memory_format=torch.channels_last)
    device = next(policy.parameters()).device
    b, _, h, w = image.shape
    out = torch.empty((b, policy.n_heads, h, w), dtype=torch.uint8, device=image.device)
    context = policy.features_extractor.context(policy.observe(image, exposure))  # the whole image's, for every tile
    context = None if context is None else context.to(device)
    for rows, cols, padded_rows, padded_cols in tiles(h, w, tile, halo):
        x = policy.observe(image[:, :, padded_rows, padded_cols].to(device), exposure)
        actions = policy.greedy_actions(x.contiguous(memory_format=torch.channels_last), context=context)
        out[:, :, rows, cols] = actions[(..., *_inner(rows, cols, padded_rows, padded_cols))].to(out)
    return out


def _linear_weights(n_out: int, n_in: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices and weights of linear interpolation (half-pixel centres, as ``F.interpolate(align_corners=False)``)
    for outputs ``start..stop-1`` of ``n_out`` from ``n_in`` samples: ``(i0, i1, weight of i1)``."""
    src = ((torch.arange(start, stop, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0)
    i0 = src.floor().long().clamp_(max=n_in - 1)
    return i0, (i0 + 1).clamp_(max=n_in - 1), (src - i0).to(torch.float32)


def upsample_rows(maps: torch.Tensor, size: tuple[int, int], start: int, stop: int) -> torch.Tensor:
    """Rows ``start..stop-1`` of the bilinear upsampling of ``maps`` ``(B, C, h, w)`` to ``size``, as
    ``F.interpolate(maps, size, mode="bilinear", align_corners=False)[:, :, start:stop]`` would give them,
    without making the whole upsampled map."""
    (h_out, w_out), (h_in, w_in) = size, maps.shape[-2:]
    r0, r1, wr = _linear_weights(h_out, h_in, start, stop)
    c0, c1, wc = _linear_weights(w_out, w_in, 0, w_out)
    wr = wr.to(maps.device).view(-1, 1)
    rows = torch.lerp(maps[:, :, r0.to(maps.device)], maps[:, :, r1.to(maps.device)], wr)
    return torch.lerp(rows[..., c0.to(maps.device)], rows[..., c1.to(maps.device)], wc.to(maps.device))


def shrink(image: np.ndarray, long_side: int | None) -> np.ndarray:
    """A copy of ``image`` (``H x W x 3``), shrunk to ``long_side`` if it is longer."""
    h, w = image.shape[:2]
    if long_side is None or max(h, w) <= long_side:
        return image.copy()
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3)


def fast_shape(h: int, w: int, fast_size: float = FAST_SIZE) -> tuple[int, int]:
    """Size of fast mode's copy: sides scaled by ``fast_size`` when it is at most 1, else the long side
    ``fast_size`` pixels; never larger than the image nor (where the image allows) a side under 32 px."""
    if fast_size <= 0:
        raise ValueError(f"fast_size must be positive, got {fast_size}")
    scale = fast_size if fast_size <= 1 else fast_size / max(h, w)
    scale = min(1.0, max(scale, min(1.0, FAST_MIN_SIDE / min(h, w))))
    return max(1, round(h * scale)), max(1, round(w * scale))


def map_tiles(
    fn: Callable[[slice, slice], torch.Tensor], image: torch.Tensor, tile: int, halo: int, align: int = 1,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply an image-to-image network tile by tile (:func:`tiles`): the same result in bounded memory.

    :param fn: ``fn(padded_rows, padded_cols)`` gives the network's output on that region of ``image``.
    :param halo: the network's receptive radius. :param align: as for :func:`tiles`.
    :param out: where to write the result (a new tensor by default); must not share memory with ``image``.
    """
    out = torch.empty_like(image) if out is None else out
    for rows, cols, padded_rows, padded_cols in tiles(*image.shape[-2:], tile, halo, align):
        out[:, :, rows, cols] = fn(padded_rows, padded_cols)[(..., *_inner(rows, cols, padded_rows, padded_cols))]
    return out


def denoise_ffdnet_tiled(
    model: FFDNet, image: torch.Tensor, sigma: torch.Tensor, tile: int = 512, out: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`agents.ffdnet.denoise_ffdnet` tile by tile (:func:`map_tiles`). Tiles start on even pixels
    (FFDNet works on 2x2 sub-images) and carry a halo of FFDNet's receptive radius (24 pixels).

    :param image: ``(B, 3, H, W)`` in [0, 1].
    :param sigma: as for ``denoise_ffdnet``: a number, ``(B,)`` or a map ``(B, 3, ceil(H/2), ceil(W/2))``.
    """
    def run(rows: slice, cols: slice) -> torch.Tensor:
        s = sigma
        if isinstance(sigma, torch.Tensor) and sigma.dim() == 4:
            s = sigma[:, :, rows.start // 2 : (rows.stop + 1) // 2, cols.start // 2 : (cols.stop + 1) // 2]
        return denoise_ffdnet(model, image[:, :, rows, cols], s)

    return map_tiles(run, image, tile, 2 * CONV_LAYERS, align=2, out=out)


def guided_denoise_tiled(enhanced: torch.Tensor, original: torch.Tensor, tile: int = 512,
                         out: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """:func:`agents.denoiser.guided_denoise` tile by tile (:func:`map_tiles`), with the noise measured once
    on the whole of ``original``: the same result in bounded memory. ``kwargs``: ``strength``, ``radius``."""
    noise = estimate_noise(original)
    halo = 2 * kwargs.get("radius", 3)
    return map_tiles(lambda rows, cols: guided_denoise(enhanced[:, :, rows, cols], original[:, :, rows, cols], noise,
                                                       **kwargs), enhanced, tile, halo, out=out)


def enhance(
    policy: PixelActorCriticPolicy,
    image: np.ndarray,
    steps: int = 6,
    action_set: ActionSet | None = None,
    tile: int = 512,
    fast: bool = False,
    fast_size: float = FAST_SIZE,
    denoise: str = "none",
    ffdnet: FFDNet | str | os.PathLike | None = None,
    exposure: float | None = None,
    return_steps: bool = False,
    steps_size: int | None = None,
) -> np.ndarray | tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Enhance a photo of any size with the greedy policy at full resolution.

    Each of the ``steps`` steps takes the policy's most likely action at every pixel
    (:func:`policy_actions`, tile by tile) and moves the image one step along the curve
    (``action_set.step``), in bands of rows and in place, so that the memory stays bounded: about
    three float32 copies of the image plus one tile's activations (under 2 GiB for 24 megapixels; see
    ``benchmarks/inference_speed.py``). Runs under ``torch.inference_mode()``; the threads are torch's
    (``torch.set_num_threads``). On a CPU, call :func:`rellie_env.cpu.tune_cpu` once first (the command-line
    tools do): without it, large images run up to 1.7x slower and tiny probabilities as denormals.

    :param policy: a policy (``agents.checkpoints.load_policy``, ``load_default``, ``load_official_rellie``).
    :param image: the photo, any form :func:`rellie_env.images.to_float_rgb` accepts (float RGB ``H x W x 3``).
    :param steps: number of greedy steps (6 as released): the brightness knob.
    :param action_set: the curve and action set the policy was trained with; default: ``policy.action_set``.
    :param tile: tile side for the network (memory against a little halo overhead).
    :param fast: run the policy on a downscaled copy (stepped with its own actions) and apply its alpha
        maps, upsampled bilinearly (before coupling), at full resolution: the smoothness term keeps them
        smooth, so little is lost at a fraction of the cost.
    :param fast_size: size of that copy (:func:`fast_shape`): a scale of the sides if at most 1, else the
        long side in pixels.
    :param denoise: after the last step: ``"none"``; ``"guided"``, the project's denoiser (a guided filter
        as strong as the noise the input had times each pixel's gain, :mod:`agents.denoiser`; what the
        command-line tools run); ``"nlm"`` (OpenCV non-local means, :func:`agents.baselines.nlm_denoise`); or
        ``"ffdnet"`` (ReLLIE's final step: FFDNet with the gain-based noise map
        :func:`agents.ffdnet.gain_noise_sigma`).
    :param ffdnet: an FFDNet model or the path of its weights (``ffdnet_net_rgb.pth``), for ``"ffdnet"``.
    :param exposure: the target brightness E (default: the policy's own), for a policy trained with a range of
        them (``policy.exposure_range``): higher is brighter. A policy trained for one E warns if given another.
    :param return_steps: also return the image after each step and the alpha maps of each step (before
        coupling, ``H x W x 3``; in fast mode the upsampled ones).
    :param steps_size: with ``return_steps``, shrink those images and maps (``INTER_AREA``) to this long
        side, so that a large photo's steps do not need ``2 * steps`` full-size copies.
    :return: the enhanced float32 RGB ``H x W x 3`` image in [0, 1] (grey for a grey photo: the heads act on
        the channels apart, so the result's channels are averaged); with ``return_steps``, the tuple
        ``(image, step_images, alpha_maps)``.
    """
    if denoise not in DENOISERS:
        raise ValueError(f"denoise must be one of {', '.join(DENOISERS)}, got {denoise!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    check_tile(tile, receptive_radius(policy))
    policy.observe(torch.zeros(1, 3, 1, 1), exposure)  # E checked (or warned about) before any work
    if policy.exposure_range is None:
        exposure = None  # a policy of one E: warned once, above
    if denoise == "ffdnet":
        if ffdnet is None:
            raise ValueError("denoise='ffdnet' needs the FFDNet weights (ffdnet=path of ffdnet_net_rgb.pth)")
        if not isinstance(ffdnet, FFDNet):
            ffdnet = load_ffdnet(ffdnet)
    action_set = policy.action_set if action_set is None else action_set
    rgb = to_float_rgb(image)  # always a fresh float32 copy: the steps work in place on it
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    h, w = rgb.shape[:2]
    band = max(1, tile * tile // w)  # rows per band of the in-place curve steps
    step_images: list[np.ndarray] = []
    alpha_maps: list[np.ndarray] = []
    with torch.inference_mode():
        x = to_nchw(rgb)
        original = x.clone() if denoise in ("ffdnet", "guided") else None
        small = None
        if fast:
            sh, sw = fast_shape(h, w, fast_size)
            small = to_nchw(cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).reshape(sh, sw, 3))
        for _ in range(steps):
            if small is None:
                actions = policy_actions(policy, x, tile, exposure=exposure)
                for r in range(0, h, band):
                    x[:, :, r : r + band] = action_set.step(x[:, :, r : r + band], actions[:, :, r : r + band])[0]
                alpha = action_set.alpha(actions) if return_steps else None
            else:
                small, alpha_small = action_set.step(small, policy_actions(policy, small, tile, exposure=exposure))
                for r in range(0, h, band):
                    up = action_set.couple(upsample_rows(alpha_small, (h, w), r, min(h, r + band)))
                    x[:, :, r : r + band] = curve_step(x[:, :, r : r + band], up, action_set.blend)
                alpha = upsample_rows(alpha_small, (h, w), 0, h) if return_steps else None
            if return_steps:
                step_images.append(shrink(rgb, steps_size))
                alpha_maps.append(shrink(to_hwc(alpha), steps_size))
            if len(tiles(*(x if small is None else small).shape[2:], tile, 0)) > 1:
                MALLOC.trim()  # tiles of several shapes fragment the heap: give its free memory back
        if denoise == "ffdnet":
            sigma = gain_noise_sigma(original, x)
            del original
            out = np.empty_like(rgb)
            denoise_ffdnet_tiled(ffdnet, x, sigma, tile, out=to_nchw(out))
            rgb = out
        elif denoise == "guided":
            out = np.empty_like(rgb)
            guided_denoise_tiled(x, original, tile, out=to_nchw(out))
            rgb = out
        elif denoise == "nlm":
            rgb = nlm_denoise(rgb)
    if grey:
        rgb[...] = rgb.mean(2, keepdims=True)  # the heads act apart; a grey photo stays grey
    MALLOC.trim()
    return (rgb, step_images, alpha_maps) if return_steps else rgb
