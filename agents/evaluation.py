"""Evaluation: the validation sets, the methods compared, their scores, reports and figures.

Shared by ``evaluate.py``, the training callbacks (validation during training) and ``benchmarks/quality.py``.
Fidelity is PSNR and SSIM against ground truth on uint8 RGB (:mod:`rellie_env.metrics`); without ground
truth, NIQE (:mod:`agents.niqe`), the reward's non-reference terms and the mean brightness.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from agents.baselines import (
    clahe,
    constant_policy,
    gamma_correction,
    histogram_equalization,
    mean_luminance,
    to_uint8,
)
from agents.inference import enhance, greedy_rollout
from agents.niqe import niqe
from agents.policies import PixelActorCriticPolicy
from rellie_env.curves import ActionSet
from rellie_env.images import Augmentation, ImageSet, load_images, stack_nchw, to_nchw
from rellie_env.losses import NO_REFERENCE_TERMS, LossWeights, image_loss, loss_terms, weighted_sum
from rellie_env.metrics import psnr, ssim

SHARED_ENV = "RELLIE_SHARED"
METHODS = ("identity", "gamma", "he", "clahe", "zero-dce", "rellie-official", "constant", "ours")
LABELS = {"identity": "input", "gamma": "gamma", "he": "HE (luma)", "clahe": "CLAHE (Lab L)",
          "zero-dce": "Zero-DCE", "rellie-official": "ReLLIE (released)", "constant": "best constant",
          "ours": "ours"}
COLUMNS = ("psnr", "ssim", "niqe", "score", "exposure", "color", "spatial", "brightness", "seconds")
HEADERS = ("PSNR dB", "SSIM", "NIQE", "score", "exposure", "colour", "spatial", "brightness", "s/image")
CELL = (240, 180)  # grid cell (width, height)
THUMB_HEIGHT = 160  # height of each picture of the steps strip


def shared_dir() -> Path:
    """The project's shared data (``../shared`` beside the repository, or ``$RELLIE_SHARED``)."""
    default = Path(__file__).resolve().parents[1].parent / "shared"
    return Path(os.environ.get(SHARED_ENV, default))


def validation_pairs(split: str = "val") -> ImageSet:
    """BSDS500's ``split`` photos darkened by the fixed, seeded low-light degradation, with the photos as
    ground truth (``$RELLIE_SHARED/data/bsds500/<split>``). Raises ``ValueError`` where it is absent."""
    return load_images(f"dark:{shared_dir() / 'data' / 'bsds500' / split}")


def real_samples() -> ImageSet:
    """The real low-light photos without references (``$RELLIE_SHARED/data/real-samples``)."""
    return load_images(str(shared_dir() / "data" / "real-samples"))


# -- the methods ------------------------------------------------------------------------------------------

Method = Callable[[np.ndarray], np.ndarray]


def agent(policy: PixelActorCriticPolicy, **kwargs) -> functools.partial:
    """:func:`agents.inference.enhance` with ``policy`` and fixed keyword arguments (``.keywords``), as a method."""
    return functools.partial(enhance, policy, **kwargs)


def weight_free_methods() -> dict[str, Method]:
    """The methods that need no weights: the input itself, gamma, histogram equalisation and CLAHE."""
    return {"identity": lambda image: image, "gamma": gamma_correction, "he": histogram_equalization,
            "clahe": clahe}


def constant_method(triple: tuple[int, int, int], steps: int, action_set: ActionSet) -> Method:
    return lambda image: constant_policy(image, triple, steps, action_set)


# -- scores -----------------------------------------------------------------------------------------------

def measure(enhanced: np.ndarray, image: np.ndarray, target: np.ndarray | None, weights: LossWeights) -> dict:
    """The metrics of one enhanced image (``seconds`` is added by the caller); ``None`` where one does not
    apply (PSNR/SSIM without ground truth, NIQE on an image too small for it)."""
    out, original = to_nchw(enhanced), to_nchw(image)
    with torch.inference_mode():
        terms = loss_terms(out, original, None, weights)
        row = {"psnr": None, "ssim": None, "score": float(weighted_sum(terms, weights, NO_REFERENCE_TERMS)[0])}
        row.update({k: float(terms[k][0]) for k in NO_REFERENCE_TERMS})
        if target is not None:
            row["psnr"] = float(psnr(out, to_nchw(target))[0])
            row["ssim"] = float(ssim(out, to_nchw(target))[0])
    try:
        row["niqe"] = niqe(enhanced)
    except ValueError:  # too small (or flat) for NIQE's blocks
        row["niqe"] = None
    row["brightness"] = mean_luminance(enhanced)
    return row


def means(rows: list[dict], methods: list[str]) -> list[dict]:
    """Mean of every column per method; each over the images where it applies."""
    result = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean = {"method": method, "image": "mean", "n_images": len(mine),
                "n_gt": sum(r["psnr"] is not None for r in mine)}
        for key in COLUMNS:
            values = [r[key] for r in mine if r[key] is not None]
            mean[key] = float(np.mean(values)) if values else None
        result.append(mean)
    return result


def fmt(value: float | None, key: str) -> str:
    if value is None:
        return ""
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}", "niqe": f"{value:.3f}",
            "seconds": f"{value:.3f}"}.get(key, f"{value:.4g}")


def markdown_table(records: list[dict], first: dict[str, str], columns: tuple[str, ...] = COLUMNS) -> list[str]:
    """Markdown table lines: the ``first`` columns (key: header) as they are, then ``columns`` formatted."""
    headers = [HEADERS[COLUMNS.index(c)] for c in columns]
    lines = ["| " + " | ".join([*first.values(), *headers]) + " |", "|" + "---|" * (len(first) + len(columns))]
    for r in records:
        cells = [str(LABELS.get(r[k], r[k]).replace("_E", " E=") if k == "method" else r[k]) for k in first]
        lines.append("| " + " | ".join(cells + [fmt(r[c], c) for c in columns]) + " |")
    return lines


@torch.inference_mode()
def greedy_loss(policy: PixelActorCriticPolicy, images: torch.Tensor, steps: int = 6,
                weights: LossWeights = LossWeights()) -> float:
    """Mean non-reference loss (:func:`rellie_env.losses.image_loss`) of the greedy policy's results on a batch."""
    final, _ = greedy_rollout(policy, images, steps)
    return float(image_loss(final, images, weights).mean())


@torch.inference_mode()
def policy_fidelity(policy: PixelActorCriticPolicy, images: torch.Tensor, targets: torch.Tensor,
                    steps: int = 6) -> tuple[float, float]:
    """Mean PSNR and SSIM of the greedy policy's results on a batch ``(N, 3, H, W)`` with its targets."""
    final, _ = greedy_rollout(policy, images, steps)
    return float(psnr(final, targets).mean()), float(ssim(final, targets).mean())


@dataclass
class ValidationCrops:
    """Fixed crops of a set with ground truth, to follow fidelity during training cheaply.

    :param images: low-light crops ``(N, 3, size, size)``.
    :param targets: their ground truth.
    """

    images: torch.Tensor
    targets: torch.Tensor

    @classmethod
    def of(cls, data: str, n: int = 16, size: int = 128, seed: int = 0, fit: bool = False) -> ValidationCrops:
        """``n`` crops (no flips or rotations), spread over the images of ``data`` (any
        :func:`~rellie_env.images.load_images` source whose images have targets, e.g. ``builtin:test`` or
        ``dark:PATH``); with ``fit``, of each image shrunk so that its shorter side is ``size`` (most of the
        scene, for a policy that acts on whole-image statistics)."""
        source = load_images(data)
        with_target = [i for i in range(len(source)) if source.target(i) is not None]
        if not with_target:
            raise ValueError(f"validation data {data!r} has no ground truth (use builtin:test or dark:PATH)")
        rng = np.random.default_rng(seed)
        crop = Augmentation(size, flip_prob=0.0, rotate_prob=0.0, fit_scale=1.0 if fit else None)
        pairs = [crop(rng, source.image(i), source.target(i))
                 for i in (with_target[k * len(with_target) // n] for k in range(n))]
        return cls(stack_nchw([p[0] for p in pairs]), stack_nchw([p[1] for p in pairs]))

    def score(self, policy: PixelActorCriticPolicy, steps: int = 6) -> tuple[float, float]:
        device = next(policy.parameters()).device
        return policy_fidelity(policy, self.images.to(device), self.targets.to(device), steps)


# -- figures ----------------------------------------------------------------------------------------------

def to_bgr8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2BGR)


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (BGR uint8) scaled to fit ``width x height``, centred on a dark background."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), 32, np.uint8)
    y, x = (height - size[1]) // 2, (width - size[0]) // 2
    canvas[y : y + size[1], x : x + size[0]] = small
    return canvas


def label(text: str, width: int, height: int = 24) -> np.ndarray:
    bar = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def grid(names: list[str], columns: dict[str, list[np.ndarray]], cell: tuple[int, int] = CELL) -> np.ndarray:
    """A picture grid (BGR uint8): one row per image, one column per entry of ``columns`` (title: images)."""
    w, h = cell
    rows = [np.hstack([label(title, w) for title in columns])]
    for i, name in enumerate(names):
        rows.append(label(name, w * len(columns)))
        rows.append(np.hstack([fit(to_bgr8(images[i]), w, h) for images in columns.values()]))
    return np.vstack(rows)


def steps_strip(image: np.ndarray, step_images: list[np.ndarray], alphas: list[np.ndarray],
                action_set: ActionSet) -> np.ndarray:
    """Top: the input and the image after each step; bottom: that step's alpha map (the lead channel, or
    the channels' mean without coupling) as colours, with the colour scale of the action set's strengths."""
    values = action_set.alpha_values()
    lo, hi = float(values.min()), float(values.max())
    lead = action_set.lead_channel
    h, w = image.shape[:2]
    width = max(1, round(w * THUMB_HEIGHT / h))

    def alpha_colours(a: np.ndarray) -> np.ndarray:
        return cv2.applyColorMap(to_uint8((np.clip(a, lo, hi) - lo) / (hi - lo)), cv2.COLORMAP_JET)

    top = [np.vstack([label("input", width), fit(to_bgr8(image), width, THUMB_HEIGHT)])]
    legend = np.full((THUMB_HEIGHT, width, 3), 255, np.uint8)
    legend[40:80, 8 : width - 8] = alpha_colours(np.tile(np.linspace(lo, hi, width - 16, dtype=np.float32), (40, 1)))
    for t in sorted({lo, 0.0, 0.5, hi}):
        x = 8 + int(round((t - lo) / (hi - lo) * (width - 17)))
        cv2.line(legend, (x, 80), (x, 86), (0, 0, 0), 1)
        cv2.putText(legend, f"{t:g}", (max(0, x - 8), 100), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    channel = "RGB"[lead] if lead is not None else "mean"
    bottom = [np.vstack([label(f"alpha ({channel} channel)", width), legend])]
    for k, (step, alpha) in enumerate(zip(step_images, alphas), start=1):
        top.append(np.vstack([label(f"step {k}", width), fit(to_bgr8(step), width, THUMB_HEIGHT)]))
        a = alpha[:, :, lead] if lead is not None else alpha.mean(2)
        bottom.append(np.vstack([label(f"alpha {k} (mean {a.mean():.2f})", width),
                                 fit(alpha_colours(a), width, THUMB_HEIGHT)]))
    return np.vstack([np.hstack(top), np.hstack(bottom)])


def write_png(path: Path, bgr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}")

