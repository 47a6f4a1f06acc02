"""The bar that matters: non-reference loss on held-aside built-in crops, 6 greedy steps.

Compares the input, the best constant policies (one action triple at every pixel, searched over the
whole action set: equal on the three channels, and per channel), the released ReLLIE weights and the
shipped model (or --model). Lower is better; the loss is spatial + 80 exposure + 50 colour, as in the reward,
and each row also shows those three weighted terms. ``--split train`` scores crops of the training photos
instead (the constants are then searched on those), which separates learning from generalising. ``--whole``
scores the whole photos (cut to multiples of 16 px, each photo weighing the same) instead of crops.
``--fast`` also enhances the whole photos with ``agents.enhance.enhance`` in full and in fast mode and scores
the results on the same crops (their regions of the photos) or whole photos, with fast mode's PSNR against
full mode: the trade-off between beating the constant and fast mode's fidelity (README, "The bar against fast mode").
Usage: python benchmarks/heldout_bar.py [--crops 16] [--size 96] [--steps 6] [--model PATH ...]
                                        [--split test] [--whole] [--fast]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from agents import load_default, load_official_rellie, load_policy
from agents.enhance import best_constant_policy, enhance, greedy_rollout, heldout_crops
from agents.policies import PixelActorCriticPolicy
from rellie_env.curves import ActionSet
from rellie_env.images import builtin_images
from rellie_env.losses import LossWeights, loss_terms
from rellie_env.metrics import psnr

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rellie_official_model.npz"
TERMS = ("spatial", "exposure", "color")


def report(name: str, finals: list[torch.Tensor], originals: list[torch.Tensor], note: str = "") -> None:
    """One row: the mean loss of ``finals`` against ``originals`` (batches; every image weighs the same)
    and its three weighted terms."""
    weights = LossWeights()
    count = sum(len(x) for x in originals)
    parts = [sum(getattr(weights, k) * float(loss_terms(f, x, None, weights)[k].sum()) for f, x in zip(finals, originals))
             / count for k in TERMS]
    print(f"{name:44s} {sum(parts):7.3f}   " + "  ".join(f"{v:6.3f}" for v in parts) + f"  {note}")


def whole_photos(split: str) -> list[torch.Tensor]:
    """The built-in photos of ``split``, whole, each cut to sides that are multiples of 16 px (the exposure
    patch; whole patches also let the constant search pool), as ``(1, 3, H, W)`` batches."""
    photos = []
    for image in builtin_images(split).images:
        h, w = (s - s % 16 for s in image.shape[:2])
        photos.append(torch.from_numpy(image[:h, :w].transpose(2, 0, 1).copy())[None])
    return photos


def crop_boxes(crops: torch.Tensor, photos: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """Where each crop of :func:`~agents.enhance.heldout_crops` lies: ``(photo, top, left)``; crop ``i`` is cut
    from photo ``i % len(photos)`` unchanged, so the best template match is exact."""
    boxes = []
    for i, crop in enumerate(crops):
        k = i % len(photos)
        distance = cv2.matchTemplate(photos[k], np.ascontiguousarray(crop.permute(1, 2, 0).numpy()), cv2.TM_SQDIFF)
        top, left = np.unravel_index(int(distance.argmin()), distance.shape)
        boxes.append((k, int(top), int(left)))
    return boxes


def report_enhance(policy: PixelActorCriticPolicy, xs: list[torch.Tensor], steps: int, whole: bool, split: str) -> None:
    """Rows for :func:`~agents.enhance.enhance` on the whole photos, full mode (on crops only: whole, it is the
    greedy rollout's row) and fast mode, scored on the whole photos (``whole``) or on the crops' regions of
    them, and fast mode's PSNR against full mode."""
    source = builtin_images(split)
    # --whole: the photos as cut by whole_photos(); crops: the photos as they are (the boxes index them).
    photos = [x[0].permute(1, 2, 0).numpy() for x in xs] if whole else source.images
    boxes = None if whole else crop_boxes(xs[0], photos)
    results = {}
    for mode in ("full", "fast"):
        outs = [torch.from_numpy(enhance(policy, p, steps=steps, fast=mode == "fast")).permute(2, 0, 1)[None]
                for p in photos]
        results[mode] = outs
        if whole and mode == "full":
            continue  # the same images as the greedy rollout's row above
        size = xs[0].shape[-1]
        finals = outs if whole else [torch.cat([outs[k][..., t : t + size, l : l + size] for k, t, l in boxes])]
        where = "whole photos" if whole else "crops' regions"
        note = "" if mode == "full" else "PSNR against full mode: " + ", ".join(
            f"{name} {float(psnr(fast, full)[0]):.1f} dB" for name, fast, full in zip(source.names, outs, results["full"]))
        report(f"  enhance(), {mode} mode ({where})", finals, xs, note)


def constant_result(x: torch.Tensor, triple: tuple[int, int, int], steps: int, action_set: ActionSet) -> torch.Tensor:
    actions = torch.tensor(triple, dtype=torch.uint8).view(1, 3, 1, 1).expand(x.shape[0], 3, *x.shape[2:])
    for _ in range(steps):
        x, _ = action_set.step(x, actions)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="crops of the held-aside photos (the bar) or of the training photos")
    parser.add_argument("--model", nargs="+", help="checkpoints (default: the shipped model)")
    parser.add_argument("--official", default=str(OFFICIAL), help="the released ReLLIE model.npz")
    parser.add_argument("--whole", action="store_true", help="the whole photos instead of crops")
    parser.add_argument("--fast", action="store_true", help="also score enhance() on the whole photos, full and "
                        "fast mode, and fast mode's PSNR against full mode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    xs = whole_photos(args.split) if args.whole else [heldout_crops(args.crops, args.size, split=args.split)]
    action_set = ActionSet()
    photos = "chelsea, coffee" if args.split == "test" else "training photos"
    what = f"whole photos ({photos})" if args.whole else f"{args.crops} crops of {args.size}x{args.size} ({photos})"
    print(f"{what}, {args.steps} steps; non-reference loss, lower is better\n"
          f"{'':44s} {'loss':>7s}   spatial exposure  colour")
    report("input (identity)", xs, xs)
    for per_channel, name in ((False, "best constant policy, same action on R,G,B"),
                              (True, "best constant policy, per channel")):
        triple, _ = best_constant_policy(xs, args.steps, action_set, per_channel=per_channel)
        report(name, [constant_result(x, triple, args.steps, action_set) for x in xs], xs, f"actions {triple}")
    if Path(args.official).is_file():
        official = load_official_rellie(args.official)
        report("released ReLLIE weights", [greedy_rollout(official, x, args.steps)[0] for x in xs], xs)
    else:
        print(f"released ReLLIE weights: {args.official} not found")
    for model in args.model or [None]:
        policy = load_policy(model) if model else load_default()
        report(f"ours ({model or 'shipped model'})", [greedy_rollout(policy, x, args.steps)[0] for x in xs], xs)
        if args.fast:
            report_enhance(policy, xs, args.steps, args.whole, args.split)


if __name__ == "__main__":
    main()
