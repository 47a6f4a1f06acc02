"""Enhance low-light images with our agent and the baselines, and compare them with the same metrics.

Input: an image, a folder (searched recursively), or ``builtin`` (the held-aside built-in low-light photos,
``builtin:test``, with their clean photos as ground truth; ``builtin:all`` for all seven). ``--gt FOLDER``
pairs ground truth by file stem (LOL: ``--input eval15/low --gt eval15/high``).

Output, under ``--out``: ``<method>/<name>.png`` per method, ``results.md`` (printed too), ``results.csv``,
``results.json`` (per image and the mean per method), ``grid.png`` (rows: images; columns: input | baselines
| ours) and ``steps_<name>.png`` (our agent's K steps and the alpha map of the lead channel at each step).

Metrics: PSNR and SSIM against the ground truth where there is one, on uint8 RGB (SSIM with an 11x11
Gaussian window, sigma 1.5, K1 0.01, K2 0.03, as MATLAB's ``ssim``); the no-reference terms of the reward
(exposure error against ``--exposure``, grey-world colour constancy, spatial consistency against the input)
and their weighted sum ``spatial + 80 exposure + 50 colour`` (lower is better); mean brightness (Rec. 601
luma); seconds per image.

Examples::

    python evaluate.py --input builtin --out demo
    python evaluate.py --input eval15/low --gt eval15/high --model runs/x/model.zip \\
        --zero-dce-weights ../shared/reference/zero_dce_epoch99.pth \\
        --rellie-weights ../shared/reference/rellie_official_model.npz --denoise nlm
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from agents.baselines import _to_uint8, clahe, gamma_correction, histogram_equalization, mean_luminance, zero_dce_enhance
from agents.checkpoints import DEFAULT_MODEL, load_default, load_policy
from agents.enhance import DENOISERS, FAST_SIZE, enhance
from agents.ffdnet import load_ffdnet
from agents.official import load_official_rellie
from agents.zero_dce import load_zero_dce
from rellie_env.cpu import tune_cpu
from rellie_env.curves import ActionSet
from rellie_env.images import ImageSet, builtin_images, load_images
from rellie_env.losses import LossWeights, loss_terms, weighted_sum
from rellie_env.metrics import psnr, ssim

METHODS = ("identity", "gamma", "he", "clahe", "zero-dce", "rellie-official", "ours")
WEIGHT_FREE = ("identity", "gamma", "he", "clahe")
LABELS = {"identity": "input", "gamma": "gamma", "he": "HE (luma)", "clahe": "CLAHE (Lab L)",
          "zero-dce": "Zero-DCE", "rellie-official": "ReLLIE (official)", "ours": "ours"}
COLUMNS = ("psnr", "ssim", "score", "exposure", "color", "spatial", "brightness", "seconds")
HEADERS = ("PSNR dB", "SSIM", "score", "exposure", "colour", "spatial", "brightness", "s/image")
NO_REFERENCE = ("spatial", "exposure", "color")
ALPHA_RANGE = (-0.3, 1.0)  # the released action set's curve strengths, for the alpha colour map
CELL = (240, 180)  # grid cell (width, height)
THUMB_HEIGHT = 160  # height of each picture of the steps strip
STEPS_SIZE = 4 * THUMB_HEIGHT  # enhance() returns the steps of the strip shrunk to this long side


class UsageError(ValueError):
    """Bad command line or input: reported as ``error: ...`` with exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default="builtin",
                        help="an image, a folder, 'builtin' (= builtin:test, with ground truth) or 'builtin:all'")
    parser.add_argument("--gt", help="folder of ground-truth images, paired with the inputs by file stem")
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")
    parser.add_argument("--model", help=f"our model: SB3 .zip, weights .pt or the official .npz "
                                        f"(default: the shipped {DEFAULT_MODEL.name})")
    parser.add_argument("--methods", help=f"comma list from {','.join(METHODS)} "
                                          "(default: the weight-free ones and those whose weights are available)")
    parser.add_argument("--steps", type=int, default=6, help="greedy steps of the ReLLIE agents (default 6)")
    parser.add_argument("--exposure", type=float, default=0.6, help="exposure level E of the score (default 0.6)")
    parser.add_argument("--denoise", choices=DENOISERS, default="none",
                        help="final denoising of the ReLLIE agents (as released ReLLIE's 'with denoising')")
    parser.add_argument("--ffdnet-weights", help="FFDNet weights for --denoise ffdnet (ReLLIE's net_rgb.pth)")
    parser.add_argument("--zero-dce-weights", help="Zero-DCE weights (e.g. ../shared/reference/zero_dce_epoch99.pth)")
    parser.add_argument("--rellie-weights", help="official ReLLIE model.npz (e.g. ../shared/reference/rellie_official_model.npz)")
    parser.add_argument("--fast", action="store_true", help="fast mode: the ReLLIE agents act on a downscaled copy")
    parser.add_argument("--fast-size", type=float, default=FAST_SIZE,
                        help=f"fast mode's copy: scale of the sides if <= 1, else its long side in px (default {FAST_SIZE})")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the networks (bounds memory; default 512)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and OpenCV (default: theirs)")
    return parser.parse_args(argv)


def weights_file(path: str | None, option: str) -> str | None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{option} file {path!r} does not exist")
    return path


def load_inputs(source: str, gt: str | None) -> ImageSet:
    """The images (and ground truth) to evaluate; unreadable files are listed in ``skipped``."""
    if source.startswith("builtin"):
        if gt is not None:
            raise UsageError("--gt does not apply to the built-in images (their clean photos are the ground truth)")
        split = source.partition(":")[2] or "test"
        return builtin_images(split)
    if not Path(source).exists():
        raise UsageError(f"input {source!r} does not exist")
    if gt is not None and not Path(gt).is_dir():
        raise UsageError(f"--gt folder {gt!r} does not exist or is not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_images(source, gt)
    for w in caught:
        if not str(w.message).startswith("skipped"):  # the skipped files are listed by main
            print(f"note: {w.message}", file=sys.stderr)
    seen: dict[str, int] = {}
    for i, name in enumerate(images.names):  # the same stem in two sub-folders: keep both outputs
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            images.names[i] = f"{name}_{seen[name]}"
    return images


def choose_methods(args: argparse.Namespace) -> list[str]:
    available = list(WEIGHT_FREE)
    if args.zero_dce_weights:
        available.append("zero-dce")
    if args.rellie_weights:
        available.append("rellie-official")
    if args.methods is None:
        if args.model or DEFAULT_MODEL.is_file():
            return available + ["ours"]
        print(f"note: the shipped model {DEFAULT_MODEL} is missing, so 'ours' is left out; "
              "pass --model PATH (.zip, .pt or the official .npz)", file=sys.stderr)
        return available
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}")
    for method, option in (("zero-dce", "--zero-dce-weights"), ("rellie-official", "--rellie-weights")):
        if method in methods and method not in available:
            raise UsageError(f"method {method!r} needs {option}")
    return sorted(dict.fromkeys(methods), key=METHODS.index)  # ours last, as in the grid


Method = Callable[[np.ndarray], tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]]


def build_methods(args: argparse.Namespace, names: list[str]) -> dict[str, Method]:
    """Each method as ``image -> (enhanced, step images, alpha maps)``; weights are loaded (and checked) here."""
    def plain(fn: Callable[[np.ndarray], np.ndarray]) -> Method:
        return lambda image: (fn(image), [], [])

    ffdnet = None
    if args.denoise == "ffdnet":
        if not args.ffdnet_weights:
            raise UsageError("--denoise ffdnet needs --ffdnet-weights (ReLLIE's FFDNet_models/net_rgb.pth)")
        ffdnet = load_ffdnet(weights_file(args.ffdnet_weights, "--ffdnet-weights"))

    def agent(policy, strip: bool = False) -> Method:
        def run(image: np.ndarray):
            out = enhance(policy, image, steps=args.steps, tile=args.tile, fast=args.fast, fast_size=args.fast_size,
                          denoise=args.denoise, ffdnet=ffdnet, return_steps=strip, steps_size=STEPS_SIZE)
            return out if strip else (out, [], [])
        return run

    table: dict[str, Method] = {"identity": plain(lambda x: x), "gamma": plain(gamma_correction),
                                "he": plain(histogram_equalization), "clahe": plain(clahe)}
    if "zero-dce" in names:
        model = load_zero_dce(weights_file(args.zero_dce_weights, "--zero-dce-weights"))
        table["zero-dce"] = plain(lambda x: zero_dce_enhance(model, x))
    if "rellie-official" in names:
        table["rellie-official"] = agent(load_official_rellie(weights_file(args.rellie_weights, "--rellie-weights")))
    if "ours" in names:
        if args.model:
            policy = load_policy(weights_file(args.model, "--model"))
        elif DEFAULT_MODEL.is_file():
            policy = load_default()
        else:
            raise UsageError(f"the shipped model {DEFAULT_MODEL} is missing; pass --model PATH "
                             "(.zip, .pt or the official .npz)")
        table["ours"] = agent(policy, strip=True)
    return {name: table[name] for name in names}


def measure(enhanced: np.ndarray, image: np.ndarray, target: np.ndarray | None, weights: LossWeights) -> dict:
    """The metrics of one enhanced image (``seconds`` is added by the caller)."""
    def nchw(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).unsqueeze(0)

    out, original = nchw(enhanced), nchw(image)
    with torch.inference_mode():
        terms = loss_terms(out, original, None, weights)
        row = {"psnr": None, "ssim": None, "score": float(weighted_sum(terms, weights, NO_REFERENCE)[0])}
        row.update({k: float(terms[k][0]) for k in NO_REFERENCE})
        if target is not None:
            row["psnr"] = float(psnr(out, nchw(target))[0])
            row["ssim"] = float(ssim(out, nchw(target))[0])
    row["brightness"] = mean_luminance(enhanced)
    return row


def means(rows: list[dict], methods: list[str]) -> list[dict]:
    """Mean of every column per method; PSNR and SSIM over the images that have ground truth."""
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
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}", "seconds": f"{value:.3f}"}.get(key, f"{value:.4g}")


def markdown(rows: list[dict], mean_rows: list[dict], weights: LossWeights, skipped: list[str]) -> str:
    def table(first: tuple[str, ...], records: list[dict], keys: tuple[str, ...]) -> list[str]:
        lines = ["| " + " | ".join(first + HEADERS) + " |", "|" + "---|" * (len(first) + len(HEADERS))]
        for r in records:
            lines.append("| " + " | ".join([str(r[k]) for k in keys] + [fmt(r[c], c) for c in COLUMNS]) + " |")
        return lines

    lines = ["## Mean per method", ""]
    lines += table(("method", "images", "with GT"), mean_rows, ("method", "n_images", "n_gt"))
    lines += ["", "## Per image", ""]
    lines += table(("image", "method"), rows, ("image", "method"))
    lines += [
        "",
        "PSNR and SSIM against the ground truth (blank where there is none), on uint8 RGB; SSIM with an 11x11 "
        "Gaussian window (sigma 1.5, K1 0.01, K2 0.03) as in MATLAB's `ssim`, averaged over the channels. "
        f"No-reference terms of the reward: exposure = mean of (16x16 patch mean - {weights.exposure_level:g})^2, "
        "colour = grey-world colour constancy, spatial = spatial consistency against the input; "
        f"score = {weights.spatial:g} spatial + {weights.exposure:g} exposure + {weights.color:g} colour "
        "(lower is better). Brightness: mean Rec. 601 luma. s/image: wall-clock seconds of the method alone.",
    ]
    if skipped:
        lines += ["", f"Skipped (unreadable): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


def to_bgr8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(_to_uint8(image), cv2.COLOR_RGB2BGR)


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


def grid(names: list[str], inputs: list[np.ndarray], outputs: dict[str, list[np.ndarray]]) -> np.ndarray:
    """Rows: images; columns: input | each method (BGR uint8)."""
    w, h = CELL
    columns = [("input", inputs)] + [(LABELS[m], outs) for m, outs in outputs.items() if m != "identity"]
    header = np.hstack([label(title, w) for title, _ in columns])
    rows = [header]
    for i, name in enumerate(names):
        rows.append(label(name, w * len(columns)))
        rows.append(np.hstack([fit(to_bgr8(images[i]), w, h) for _, images in columns]))
    return np.vstack(rows)


def steps_strip(image: np.ndarray, step_images: list[np.ndarray], alphas: list[np.ndarray], lead: int | None) -> np.ndarray:
    """Top: the input and the image after each step; bottom: that step's alpha map (lead channel) as colours."""
    h, w = image.shape[:2]
    width = max(1, round(w * THUMB_HEIGHT / h))

    def alpha_colours(a: np.ndarray) -> np.ndarray:
        scaled = (np.clip(a, *ALPHA_RANGE) - ALPHA_RANGE[0]) / (ALPHA_RANGE[1] - ALPHA_RANGE[0])
        return cv2.applyColorMap(_to_uint8(scaled), cv2.COLORMAP_JET)

    top = [np.vstack([label("input", width), fit(to_bgr8(image), width, THUMB_HEIGHT)])]
    # The legend: the colour scale from the smallest to the largest curve strength, with ticks.
    ticks = sorted({ALPHA_RANGE[0], 0.0, 0.5, ALPHA_RANGE[1]})
    legend = np.full((THUMB_HEIGHT, width, 3), 255, np.uint8)
    span = np.linspace(*ALPHA_RANGE, width - 16, dtype=np.float32)
    legend[40:80, 8 : width - 8] = alpha_colours(np.tile(span, (40, 1)))
    for t in ticks:
        x = 8 + int(round((t - ALPHA_RANGE[0]) / (ALPHA_RANGE[1] - ALPHA_RANGE[0]) * (width - 17)))
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


def run(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise UsageError(f"--steps must be non-negative, got {args.steps}")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    tune_cpu()  # denormals flushed, freed memory reused: for every method, not only the ReLLIE agents
    images = load_inputs(args.input, args.gt)
    if images.skipped:
        print(f"skipped {len(images.skipped)} unreadable file(s): {', '.join(images.skipped)}", file=sys.stderr)
    methods = choose_methods(args)
    runners = build_methods(args, methods)
    weights = LossWeights(exposure_level=args.exposure)
    out = Path(args.out)
    rows: list[dict] = []
    outputs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for name, image, target in zip(images.names, images.images, images.targets):
        for method, fn in runners.items():
            start = time.perf_counter()
            enhanced, step_images, alphas = fn(image)
            seconds = time.perf_counter() - start
            rows.append({"image": name, "method": method, **measure(enhanced, image, target, weights),
                         "seconds": seconds})
            outputs[method].append(enhanced)
            write_png(out / method / f"{name}.png", to_bgr8(enhanced))
            if method == "ours":
                write_png(out / f"steps_{name}.png", steps_strip(image, step_images, alphas, ActionSet().lead_channel))
        print(f"{name}: done ({', '.join(methods)})", file=sys.stderr)
    mean_rows = means(rows, methods)
    text = markdown(rows, mean_rows, weights, images.skipped)
    (out / "results.md").write_text(text)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "method", *COLUMNS, "n_images", "n_gt"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows + mean_rows)
    settings = {k: v for k, v in vars(args).items()}
    settings.update(methods=methods, ssim="uint8 RGB, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03 (MATLAB)",
                    score=f"{weights.spatial:g} spatial + {weights.exposure:g} exposure + {weights.color:g} colour")
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "skipped": images.skipped,
         "no_ground_truth": [n for n, t in zip(images.names, images.targets) if t is None],
         "results": rows, "means": mean_rows}, indent=2))
    write_png(out / "grid.png", grid(images.names, images.images, outputs))
    print(text)
    print(f"wrote {out}/: results.md/.csv/.json, grid.png, "
          f"{'steps_<name>.png, ' if 'ours' in methods else ''}<method>/<name>.png", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:  # bad input, weights or output folder: no traceback
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)  # the first line names the file; torch adds pages of advice
        return 2


if __name__ == "__main__":
    sys.exit(main())
