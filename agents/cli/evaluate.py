"""Enhance low-light images with our agent and the baselines, and compare them with the same metrics.

Input: an image, a folder (searched recursively), ``builtin`` (the held-aside built-in low-light photos,
``builtin:test``, with their clean photos as ground truth; ``builtin:all`` for all eight) or ``dark:FOLDER``
(clean photos darkened by the fixed low-light degradation, the photos being the ground truth).
``--gt FOLDER`` pairs ground truth by file stem (LOL: ``--input eval15/low --gt eval15/high``).

Output, under ``--out``: ``<method>/<name>.png`` per method, ``results.md`` (printed too), ``results.csv``,
``results.json`` (per image and the mean per method), ``grid.png`` (rows: images; columns: input | baselines
| ours) and ``steps_<name>.png`` (our agent's K steps and its alpha map at each step).

Metrics: PSNR and SSIM against the ground truth where there is one, on uint8 RGB (SSIM with an 11x11
Gaussian window, sigma 1.5, K1 0.01, K2 0.03, as MATLAB's ``ssim``); NIQE (no reference, LIVE's release;
lower is better); the no-reference terms of the reward (exposure error against ``--exposure``, grey-world
colour constancy, spatial consistency against the input) and their weighted sum
``spatial + 80 exposure + 50 colour`` (lower is better); mean brightness (Rec. 601 luma); seconds per image.

Examples::

    rellie-evaluate --input builtin --out demo
    rellie-evaluate --input eval15/low --gt eval15/high --model runs/x/model.zip \\
        --zero-dce-weights ../shared/reference/zero_dce_epoch99.pth \\
        --rellie-weights ../shared/reference/rellie_official_model.npz --denoise nlm
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from agents.baselines import zero_dce_enhance
from agents.checkpoints import DEFAULT_MODEL, load_default, load_policy
from agents.evaluation import (
    CELL,
    COLUMNS,
    LABELS,
    METHODS,
    Method,
    agent,
    constant_method,
    grid,
    markdown_table,
    means,
    measure,
    steps_strip,
    to_bgr8,
    weight_free_methods,
    write_png,
)
from agents.ffdnet import load_ffdnet
from agents.inference import DENOISERS, FAST_SIZE, check_tile, enhance, receptive_radius
from agents.official import load_official_rellie
from agents.zero_dce import load_zero_dce
from rellie_env.config import min_side
from rellie_env.cpu import tune_cpu
from rellie_env.images import ImageSet, builtin_images, load_images
from rellie_env.losses import LossWeights

WEIGHT_FREE = ("identity", "gamma", "he", "clahe")
STEPS_SIZE = 640  # enhance() returns the steps of the strip shrunk to this long side

__all__ = ["CELL", "main"]


class UsageError(ValueError):
    """Bad command line or input: reported as ``error: ...`` with exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rellie-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default="builtin", help="an image, a folder, 'builtin' (= builtin:test, with "
                        "ground truth), 'builtin:all', or 'dark:FOLDER' (clean photos, darkened)")
    parser.add_argument("--gt", help="folder of ground-truth images, paired with the inputs by file stem")
    parser.add_argument("--out", default="demo", help="output folder (default: demo; must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    parser.add_argument("--model", help=f"our model: SB3 .zip, weights .pt or the official .npz "
                                        f"(default: the shipped {DEFAULT_MODEL.name})")
    parser.add_argument("--methods", help=f"comma list from {','.join(METHODS)} "
                                          "(default: the weight-free ones and those whose weights are available)")
    parser.add_argument("--steps", type=int, default=6, help="greedy steps of the ReLLIE agents (default 6)")
    parser.add_argument("--exposure", help="target brightness E of our model and of the score, or a comma list for a "
                        "sweep (ours once per E, written to ours_E<E>/, and exposure_<name>.png: the input, then "
                        "one column per E; without --model, the shipped model trained to follow E runs); default: "
                        "our model's own E (0.6 for the score without one)")
    parser.add_argument("--denoise", choices=DENOISERS, default="guided",
                        help="final denoising of the ReLLIE agents (ours and the released): guided, the project's "
                        "(default); none; nlm; ffdnet, as released ReLLIE's 'with denoising'")
    parser.add_argument("--ffdnet-weights", help="FFDNet weights for --denoise ffdnet (ReLLIE's net_rgb.pth)")
    parser.add_argument("--zero-dce-weights", help="Zero-DCE weights (e.g. ../shared/reference/zero_dce_epoch99.pth)")
    parser.add_argument("--rellie-weights",
                        help="official ReLLIE model.npz (e.g. ../shared/reference/rellie_official_model.npz)")
    parser.add_argument("--constant-actions", help="R,G,B actions of the 'constant' method (one action triple at "
                        "every pixel and step; benchmarks/quality.py searches the best on training photos)")
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
        return builtin_images(source.partition(":")[2] or "test")
    if not Path(source.removeprefix("dark:")).exists():
        raise UsageError(f"input {source!r} does not exist")
    if gt is not None and not Path(gt).is_dir():
        raise UsageError(f"--gt folder {gt!r} does not exist or is not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_images(source, gt)
    for w in caught:
        if not str(w.message).startswith("skipped"):  # the skipped files are listed by main
            print(f"note: {w.message}", file=sys.stderr)
    return images


def unique_names(names: list[str]) -> list[str]:
    """File stems made unique (the same stem in two sub-folders: ``x``, ``x_2``), so that no output is lost."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def choose_methods(args: argparse.Namespace) -> list[str]:
    available = list(WEIGHT_FREE)
    for method, given in (("zero-dce", args.zero_dce_weights), ("rellie-official", args.rellie_weights),
                          ("constant", args.constant_actions)):
        if given:
            available.append(method)
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
    for method, option in (("zero-dce", "--zero-dce-weights"), ("rellie-official", "--rellie-weights"),
                           ("constant", "--constant-actions")):
        if method in methods and method not in available:
            raise UsageError(f"method {method!r} needs {option}")
    return sorted(dict.fromkeys(methods), key=METHODS.index)  # ours last, as in the grid


def constant_triple(text: str, n_actions: int) -> tuple[int, int, int]:
    try:
        triple = tuple(int(v) for v in text.split(","))
    except ValueError:
        triple = ()
    if len(triple) != 3 or not all(0 <= a < n_actions for a in triple):
        raise UsageError(f"--constant-actions must be three actions R,G,B in [0, {n_actions}), got {text!r}")
    return triple


def build_methods(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Method], dict]:
    """Each method as ``image -> enhanced``, and the ReLLIE agents' policies by method; weights are loaded (and
    checked) here."""
    ffdnet = None
    if args.denoise == "ffdnet":
        if not args.ffdnet_weights:
            raise UsageError("--denoise ffdnet needs --ffdnet-weights (ReLLIE's FFDNet_models/net_rgb.pth)")
        ffdnet = load_ffdnet(weights_file(args.ffdnet_weights, "--ffdnet-weights"))
    settings = dict(steps=args.steps, tile=args.tile, fast=args.fast, fast_size=args.fast_size,
                    denoise=args.denoise, ffdnet=ffdnet)
    table: dict[str, Method] = weight_free_methods()
    policies = {}
    if "zero-dce" in names:
        model = load_zero_dce(weights_file(args.zero_dce_weights, "--zero-dce-weights"))
        table["zero-dce"] = lambda x: zero_dce_enhance(model, x)
    if "rellie-official" in names:
        policies["rellie-official"] = load_official_rellie(weights_file(args.rellie_weights, "--rellie-weights"))
        table["rellie-official"] = agent(policies["rellie-official"], **settings)
    if "ours" in names:
        if args.model:
            policy = load_policy(weights_file(args.model, "--model"))
        elif DEFAULT_MODEL.is_file():
            policy = load_default(exposure_control=args.exposure is not None)  # --exposure: the model that follows E
        else:
            raise UsageError(f"the shipped model {DEFAULT_MODEL} is missing; pass --model PATH "
                             "(.zip, .pt or the official .npz)")
        policies["ours"] = policy
        table["ours"] = agent(policy, **settings)
    if "constant" in names:
        action_set = policies["ours"].action_set if "ours" in policies else load_default().action_set
        triple = constant_triple(args.constant_actions, action_set.n_actions)
        table["constant"] = constant_method(triple, args.steps, action_set)
    return {name: table[name] for name in names}, policies


def markdown(rows: list[dict], mean_rows: list[dict], weights: LossWeights, skipped: list[str]) -> str:
    lines = ["## Mean per method", ""]
    lines += markdown_table(mean_rows, {"method": "method", "n_images": "images", "n_gt": "with GT"})
    lines += ["", "## Per image", ""]
    lines += markdown_table(rows, {"image": "image", "method": "method"})
    lines += [
        "",
        "PSNR and SSIM against the ground truth (blank where there is none), on uint8 RGB; SSIM with an 11x11 "
        "Gaussian window (sigma 1.5, K1 0.01, K2 0.03) as in MATLAB's `ssim`, averaged over the channels. "
        "NIQE: LIVE's release (grey, 96x96 blocks; lower is better; blank on images under 96x192). "
        f"No-reference terms of the reward: exposure = mean of (16x16 patch mean - {weights.exposure_level:g})^2, "
        "colour = grey-world colour constancy, spatial = spatial consistency against the input; "
        f"score = {weights.spatial:g} spatial + {weights.exposure:g} exposure + {weights.color:g} colour "
        "(lower is better). Brightness: mean Rec. 601 luma. s/image: wall-clock seconds of the method alone.",
    ]
    if skipped:
        lines += ["", f"Skipped (unreadable): {', '.join(skipped)}"]
    return "\n".join(lines) + "\n"


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (then empty it)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"--out {str(out)!r} already holds results; choose a new folder or --overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def exposures(text: str | None) -> list[float | None]:
    """The E values of ``--exposure`` (``[None]``: the model's own), each checked as a loss's exposure level."""
    if text is None:
        return [None]
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--exposure takes numbers in (0, 1), one or a comma list, got {text!r}") from None
    if not values:
        raise UsageError("--exposure takes numbers in (0, 1), one or a comma list")
    for value in values:
        LossWeights(exposure_level=value)  # in (0, 1)
    return values


def run(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise UsageError(f"--steps must be non-negative, got {args.steps}")
    sweep = exposures(args.exposure)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
        import cv2

        cv2.setNumThreads(args.threads)
    tune_cpu()  # denormals flushed, freed memory reused: for every method, not only the ReLLIE agents
    images = load_inputs(args.input, args.gt)
    if images.skipped:
        print(f"skipped {len(images.skipped)} unreadable file(s): {', '.join(images.skipped)}", file=sys.stderr)
    methods = choose_methods(args)
    runners, policies = build_methods(args, methods)
    for agent_policy in policies.values():
        check_tile(args.tile, receptive_radius(agent_policy))
    policy = policies.get("ours")
    own = policy.exposure if policy is not None and policy.exposure is not None else 0.6
    weights = LossWeights(exposure_level=sweep[0] or own)
    score_weights = {m: weights for m in methods}
    if policy is not None:
        settings = runners.pop("ours").keywords
        if len(sweep) > 1:  # ours once per E, each scored against its own E
            methods.remove("ours")
            for e in sweep:
                runners[f"ours_E{e:g}"] = agent(policy, **settings, exposure=e)
                methods.append(f"ours_E{e:g}")
                score_weights[f"ours_E{e:g}"] = LossWeights(exposure_level=e)
        else:
            runners["ours"] = agent(policy, **settings, exposure=sweep[0])
        for e in sweep:
            policy.observe(torch.zeros(1, 3, 1, 1), e)  # a conditioned model refuses an E outside its range
    side = min_side(weights)
    names, small = [], []
    for name, image in zip(unique_names(images.names), images.images):
        (names if min(image.shape[:2]) >= side else small).append(name)
        if small and small[-1] == name:
            small[-1] = f"{name} ({image.shape[0]}x{image.shape[1]})"
    if small:
        print(f"skipped {len(small)} image(s) under {side}x{side} pixels, the least the scores need: "
              f"{', '.join(small)}", file=sys.stderr)
    if not names:
        raise UsageError(f"no image of at least {side}x{side} pixels to evaluate")
    out = Path(args.out)
    prepare_out(out, args.overwrite)
    rows: list[dict] = []
    outputs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    kept = [i for i, name in enumerate(unique_names(images.names)) if name in names]
    for name, i in zip(names, kept):
        image, target = images.image(i), images.target(i)
        for method, fn in runners.items():
            start = time.perf_counter()
            enhanced = fn(image)
            seconds = time.perf_counter() - start
            rows.append({"image": name, "method": method, **measure(enhanced, image, target, score_weights[method]),
                         "seconds": seconds})
            outputs[method].append(enhanced)
            write_png(out / method / f"{name}.png", to_bgr8(enhanced))
        if policy is not None:
            _, step_images, alphas = enhance(policy, image, steps=args.steps, tile=args.tile, fast=args.fast,
                                             fast_size=args.fast_size, exposure=sweep[0] if len(sweep) == 1 else None,
                                             return_steps=True, steps_size=STEPS_SIZE)
            write_png(out / f"steps_{name}.png", steps_strip(image, step_images, alphas, policy.action_set))
        if len(sweep) > 1 and policy is not None:
            strip = {"input": [image], **{f"E = {e:g}": [outputs[f"ours_E{e:g}"][-1]] for e in sweep}}
            write_png(out / f"exposure_{name}.png", grid([name], strip))
        print(f"{name}: done ({', '.join(methods)})", file=sys.stderr)
    mean_rows = means(rows, methods)
    text = markdown(rows, mean_rows, weights, images.skipped)
    (out / "results.md").write_text(text)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "method", *COLUMNS, "n_images", "n_gt"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows + mean_rows)
    settings = dict(vars(args))
    settings.update(methods=methods, ssim="uint8 RGB, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03 (MATLAB)",
                    score=f"{weights.spatial:g} spatial + {weights.exposure:g} exposure + {weights.color:g} colour")
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "skipped": images.skipped,
         "no_ground_truth": [n for n, i in zip(names, kept) if images.target(i) is None], "too_small": small,
         "results": rows, "means": mean_rows}, indent=2))
    columns = {"input": [images.image(i) for i in kept]}
    columns.update({LABELS.get(m, m): outputs[m] for m in methods if m != "identity"})
    write_png(out / "grid.png", grid(names, columns))
    print(text)
    print(f"wrote {out}/: results.md/.csv/.json, grid.png, "
          f"{'steps_<name>.png, ' if policy is not None else ''}<method>/<name>.png", file=sys.stderr)
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
