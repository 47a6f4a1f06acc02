"""Exposure control: does one model trained with a range of targets follow the target E it is given?

For every photo of the paired validation set (BSDS500 ``val``, darkened) and of the real low-light samples,
the conditioned model enhances at each E of ``--targets``; per E, the output's mean brightness and its
exposure error, the mean absolute difference of its 16x16 patch means (of the grey image) to E. Models
trained at one fixed E (``--fixed E=PATH``) are scored at their own E alike. Prints:

* the share of photos whose brightness strictly increases with E (the control works on every photo);
* the mean exposure error of the conditioned model at each E, and of each fixed-E model with the ratio.

Writes ``results.json`` and ``exposure.md`` to ``--out``. Usage::

    python benchmarks/exposure.py --model runs/conditioned/policy.pt --fixed 0.45=runs/e045/policy.pt \\
        --fixed 0.65=runs/e065/policy.pt [--targets 0.35,0.45,0.55,0.65,0.75] [--long-side 480] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agents import evaluation
from agents.checkpoints import load_policy
from agents.inference import enhance, shrink
from rellie_env.cpu import tune_cpu
from rellie_env.images import to_nchw

PATCH = 16


def exposure_error(image: np.ndarray, target: float) -> float:
    """Mean absolute difference of the grey image's 16x16 patch means to ``target``."""
    patches = F.avg_pool2d(to_nchw(image).mean(1, keepdim=True), PATCH)
    return float((patches - target).abs().mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model trained with an exposure range")
    p.add_argument("--fixed", action="append", default=[], metavar="E=PATH", help="a model trained at one E")
    p.add_argument("--targets", default="0.35,0.45,0.55,0.65,0.75")
    p.add_argument("--long-side", type=int, help="shrink each photo to this long side first (a quicker run)")
    p.add_argument("--limit", type=int, help="only the first N photos of each set")
    p.add_argument("--out", default="runs/exposure")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu()
    targets = [float(e) for e in args.targets.split(",")]
    conditioned = load_policy(args.model)
    if conditioned.exposure_range is None:
        p.error(f"{args.model} was trained for one target brightness; give a model trained with --exposure-range")
    fixed = {float(e): load_policy(path) for e, path in (item.split("=", 1) for item in args.fixed)}
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"conditioned {args.model} (E in {list(conditioned.exposure_range)}); targets {targets}")
    rows = []
    for kind, images in (("paired", evaluation.validation_pairs()), ("real", evaluation.real_samples())):
        for k, name in enumerate(images.names[: args.limit]):
            photo = shrink(images.image(k), args.long_side)
            for e in targets:
                out = enhance(conditioned, photo, exposure=e)
                rows.append({"set": kind, "image": name, "model": "conditioned", "E": e,
                             "brightness": float(out.mean()), "error": exposure_error(out, e)})
            for e, policy in fixed.items():
                out = enhance(policy, photo)
                rows.append({"set": kind, "image": name, "model": f"fixed {e:g}", "E": e,
                             "brightness": float(out.mean()), "error": exposure_error(out, e)})
            print(f"  {kind} {k + 1} {name}", file=sys.stderr, flush=True)
    lines = []
    for kind in ("paired", "real"):
        mine = [r for r in rows if r["set"] == kind]
        curves = {}
        for r in mine:
            if r["model"] == "conditioned":
                curves.setdefault(r["image"], []).append(r["brightness"])
        ordered = sum(all(a < b for a, b in zip(c, c[1:])) for c in curves.values())
        lines += [f"\n{kind}: brightness strictly increasing with E on {ordered}/{len(curves)} photos", "",
                  "| E | conditioned: brightness | conditioned: exposure error | fixed-E model: exposure error | ratio |",
                  "|---|---|---|---|---|"]
        for e in targets:
            cond = [r for r in mine if r["model"] == "conditioned" and r["E"] == e]
            error = np.mean([r["error"] for r in cond])
            own = [r["error"] for r in mine if r["model"] == f"fixed {e:g}"]
            tail = f"{np.mean(own):.4f} | {error / np.mean(own):.2f}" if own else "- | -"
            lines.append(f"| {e:g} | {np.mean([r['brightness'] for r in cond]):.4f} | {error:.4f} | {tail} |")
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "exposure.md").write_text("\n".join(lines).lstrip() + "\n")
    (out / "results.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
