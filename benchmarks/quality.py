"""Picture quality against the peers: fidelity on darkened photos with ground truth, NIQE on real low light.

* Paired: every photo of BSDS500's validation split darkened by the fixed, seeded low-light degradation
  (:class:`rellie_env.images.Degradation`: ``clip(x^gamma * g * c + n)``, gamma in [1.8, 2.8], gain in
  [0.2, 0.5], cast exp(U(-0.1, 0.1)), Poisson-Gaussian noise); mean PSNR and SSIM against the photo, NIQE
  and brightness of identity, gamma, HE, CLAHE, Zero-DCE, the released ReLLIE weights, the best constant
  policy (searched on darkened crops of BSDS500's training photos) and ours.
* Real: NIQE and mean brightness on the real low-light samples (no references), and a picture grid
  (input | gamma | Zero-DCE | released ReLLIE | ours).

Reads ``$RELLIE_SHARED`` (default ``../shared``): ``data/bsds500``, ``data/real-samples`` and the reference
weights. Prints the tables and writes ``results.json``, ``paired.md``, ``real.md`` and ``real_grid.png`` to
``--out``. Usage::

    python benchmarks/quality.py [--model PATH] [--out runs/quality] [--limit N] [--denoise none|nlm|ffdnet]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agents import evaluation
from agents.baselines import best_constant_policy, zero_dce_enhance
from agents.checkpoints import load_default, load_policy
from agents.ffdnet import load_ffdnet
from agents.official import load_official_rellie
from agents.zero_dce import load_zero_dce
from rellie_env.cpu import tune_cpu
from rellie_env.images import Augmentation, load_images, stack_nchw
from rellie_env.losses import LossWeights

GRID_METHODS = ("gamma", "zero-dce", "rellie-official", "ours")


def constant_triple(steps: int, action_set, weights: LossWeights, n: int = 32, size: int = 128) -> tuple[int, int, int]:
    """The best constant action triple on ``n`` darkened crops of BSDS500's training photos."""
    source = load_images(f"dark:{evaluation.shared_dir() / 'data' / 'bsds500' / 'train'}")
    rng = np.random.default_rng(0)
    crop = Augmentation(size, flip_prob=0.0, rotate_prob=0.0)
    crops = np.stack([crop(rng, source.image(int(i)))[0] for i in rng.permutation(len(source))[:n]])
    triple, _ = best_constant_policy(stack_nchw(list(crops)), steps, action_set, weights)
    return triple


def evaluate(methods: dict, images, names: list[str], weights: LossWeights) -> tuple[list[dict], dict]:
    rows, outputs = [], {m: [] for m in methods}
    for k, (name, image, target) in enumerate(zip(names, images.images, images.targets)):
        for method, fn in methods.items():
            start = time.perf_counter()
            out = fn(image)
            rows.append({"image": name, "method": method, **evaluation.measure(out, image, target, weights),
                         "seconds": time.perf_counter() - start})
            outputs[method].append(out)
        print(f"  {k + 1}/{len(names)} {name}", file=sys.stderr, flush=True)
    return rows, outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="our model (.zip, .pt); default: the shipped model")
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--denoise", default="none", choices=("none", "nlm", "ffdnet"),
                   help="final denoising of both ReLLIE agents (ffdnet: the released FFDNet weights)")
    p.add_argument("--limit", type=int, help="only the first N photos of each set (a quick look)")
    p.add_argument("--constant-exposure", type=float, default=0.6,
                   help="exposure level E of the loss that picks the best constant policy")
    p.add_argument("--skip-real", action="store_true", help="only the paired set")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu()
    reference = evaluation.shared_dir() / "reference"
    policy = load_policy(args.model) if args.model else load_default()
    ffdnet = load_ffdnet(reference / "ffdnet_net_rgb.pth") if args.denoise == "ffdnet" else None
    settings = dict(steps=args.steps, denoise=args.denoise, ffdnet=ffdnet)
    weights = LossWeights(exposure_level=args.constant_exposure)
    triple = constant_triple(args.steps, policy.action_set, weights)
    zero_dce = load_zero_dce(reference / "zero_dce_epoch99.pth")
    methods = evaluation.weight_free_methods()
    methods.update({
        "zero-dce": lambda x: zero_dce_enhance(zero_dce, x),
        "rellie-official": evaluation.agent(load_official_rellie(reference / "rellie_official_model.npz"), **settings),
        "constant": evaluation.constant_method(triple, args.steps, policy.action_set),
        "ours": evaluation.agent(policy, **settings),
    })
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"model {args.model or 'shipped default'}; {args.steps} steps; denoise {args.denoise}; "
          f"best constant (RGB actions, E = {args.constant_exposure:g}): {triple}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"settings": {**vars(args), "constant_triple": triple}}
    sets = [("paired", evaluation.validation_pairs())] + ([] if args.skip_real else [("real", evaluation.real_samples())])
    for kind, images in sets:
        names = images.names[: args.limit]
        print(f"{kind}: {len(names)} images", file=sys.stderr)
        rows, outputs = evaluate(methods, images, names, LossWeights())
        mean_rows = evaluation.means(rows, list(methods))
        columns = ("psnr", "ssim", "niqe", "brightness", "seconds") if kind == "paired" else ("niqe", "brightness",
                                                                                             "seconds")
        table = "\n".join(evaluation.markdown_table(mean_rows, {"method": "method"}, columns))
        print(f"\n{kind} ({len(names)} images)\n{table}")
        (out / f"{kind}.md").write_text(table + "\n")
        report[kind] = {"rows": rows, "means": mean_rows}
        if kind == "real":
            columns = {"input": [images.image(i) for i in range(len(names))]}
            columns.update({evaluation.LABELS[m]: outputs[m] for m in GRID_METHODS})
            evaluation.write_png(out / "real_grid.png", evaluation.grid(names, columns, cell=(200, 140)))
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
