"""Picture quality against the peers: fidelity on darkened photos with ground truth, NIQE on real low light.

* Paired: every photo of BSDS500's validation split darkened by the fixed, seeded low-light degradation
  (:class:`rellie_env.images.Degradation`: ``clip(x^gamma * g * c + n)``, gamma in [1.8, 2.8], gain in
  [0.2, 0.5], cast exp(U(-0.1, 0.1)), Poisson-Gaussian noise); mean PSNR and SSIM against the photo, NIQE
  and brightness of identity, gamma, HE, CLAHE, Zero-DCE, the released ReLLIE weights (alone, and with its
  FFDNet denoiser as released, and with our denoiser), the best constant policy (searched by the training
  loss on darkened whole-scene crops of BSDS500's training photos), gamma with our denoiser, and ours
  (without and with its denoiser, :mod:`agents.denoiser`).
* Real: NIQE and mean brightness on the real low-light samples (no references), and a picture grid
  (input | gamma | Zero-DCE | released ReLLIE | ours).

Reads ``$RELLIE_SHARED`` (default ``../shared``): ``data/bsds500``, ``data/real-samples`` and the reference
weights. Prints the tables and writes ``results.json``, ``paired.md``, ``real.md`` and ``real_grid.png`` to
``--out``. Usage::

    python benchmarks/quality.py [--model PATH] [--out runs/quality] [--limit N] [--methods a,b]
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agents import evaluation
from agents.baselines import best_constant_policy, gamma_correction, zero_dce_enhance
from agents.checkpoints import load_default, load_policy
from agents.cli.train import CONFIGS
from agents.ffdnet import load_ffdnet
from agents.inference import guided_denoise_tiled
from agents.official import load_official_rellie
from agents.zero_dce import load_zero_dce
from rellie_env.config import EnvConfig
from rellie_env.cpu import tune_cpu
from rellie_env.images import Augmentation, load_images, stack_nchw, to_hwc, to_nchw
from rellie_env.losses import LossWeights

METHODS = ("identity", "gamma", "he", "clahe", "zero-dce", "rellie-official", "rellie-official+ffdnet",
           "rellie-official+guided", "constant", "gamma+guided", "ours-no-denoise", "ours")
LABELS = {**evaluation.LABELS, "rellie-official+ffdnet": "ReLLIE (released) + FFDNet",
          "rellie-official+guided": "ReLLIE (released) + our denoiser", "gamma+guided": "gamma + our denoiser",
          "ours-no-denoise": "ours, no denoising"}
GRID_METHODS = ("gamma", "zero-dce", "rellie-official", "ours")


def constant_triple(args: argparse.Namespace, action_set, n: int = 32, size: int = 128) -> tuple[int, int, int]:
    """The best constant action triple, by the loss of the training config ``args.config``, on ``n`` whole-scene
    crops of BSDS500's training photos darkened as in training."""
    weights = EnvConfig.from_kwargs(**json.loads(Path(args.config).read_text())["env"]).weights
    source = load_images(f"dark:{evaluation.shared_dir() / 'data' / 'bsds500' / 'train'}")
    rng = np.random.default_rng(0)
    crop = Augmentation(size, flip_prob=0.0, rotate_prob=0.0, fit_scale=1.0)
    crops = [crop(rng, source.image(int(i)))[0] for i in rng.permutation(len(source))[:n]]
    triple, _ = best_constant_policy(stack_nchw(crops), args.steps, action_set, weights)
    print(f"best constant policy (RGB actions) by {args.config}'s loss: {triple}", file=sys.stderr)
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
    p.add_argument("--limit", type=int, help="only the first N photos of each set (a quick look)")
    p.add_argument("--config", default=str(CONFIGS / "default.json"),
                   help="a training config whose loss picks the best constant policy (default: the default recipe)")
    p.add_argument("--sets", default="paired,real", help="which sets: paired, real or both (default)")
    p.add_argument("--methods", help="comma list of the methods to run (default: all)")
    p.add_argument("--exposure", type=float, help="target brightness E of our model (one trained with a range)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu()
    reference = evaluation.shared_dir() / "reference"
    policy = load_policy(args.model) if args.model else load_default()
    names = args.methods.split(",") if args.methods else list(METHODS)
    unknown = set(names) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {','.join(METHODS)}")
    released = load_official_rellie(reference / "rellie_official_model.npz")
    steps = dict(steps=args.steps, exposure=args.exposure)
    factories = {
        "zero-dce": lambda: functools.partial(zero_dce_enhance, load_zero_dce(reference / "zero_dce_epoch99.pth")),
        "rellie-official": lambda: evaluation.agent(released, steps=args.steps),
        "rellie-official+ffdnet": lambda: evaluation.agent(released, steps=args.steps, denoise="ffdnet",
                                                           ffdnet=load_ffdnet(reference / "ffdnet_net_rgb.pth")),
        "rellie-official+guided": lambda: evaluation.agent(released, steps=args.steps, denoise="guided"),
        "constant": lambda: evaluation.constant_method(constant_triple(args, policy.action_set), args.steps,
                                                       policy.action_set),
        "ours": lambda: evaluation.agent(policy, **steps, denoise="guided"),
        "ours-no-denoise": lambda: evaluation.agent(policy, **steps),
        "gamma+guided": lambda: lambda x: to_hwc(guided_denoise_tiled(to_nchw(gamma_correction(x)), to_nchw(x))),
    }
    free = evaluation.weight_free_methods()
    methods = {m: free[m] if m in free else factories[m]() for m in names}
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"model {args.model or 'shipped default'}; {args.steps} steps")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"settings": vars(args)}
    loaders = {"paired": evaluation.validation_pairs, "real": evaluation.real_samples}
    sets = [(kind, loaders[kind]()) for kind in args.sets.split(",")]
    for kind, images in sets:
        names = images.names[: args.limit]
        print(f"{kind}: {len(names)} images", file=sys.stderr)
        rows, outputs = evaluate(methods, images, names, LossWeights())
        mean_rows = evaluation.means(rows, list(methods))
        columns = ("psnr", "ssim", "niqe", "brightness", "seconds") if kind == "paired" else ("niqe", "brightness",
                                                                                             "seconds")
        for row in mean_rows:
            row["method"] = LABELS.get(row["method"], row["method"])
        table = "\n".join(evaluation.markdown_table(mean_rows, {"method": "method"}, columns))
        print(f"\n{kind} ({len(names)} images)\n{table}")
        (out / f"{kind}.md").write_text(table + "\n")
        report[kind] = {"rows": rows, "means": mean_rows}
        if kind == "real":
            columns = {"input": [images.image(i) for i in range(len(names))]}
            columns.update({LABELS[m]: outputs[m] for m in GRID_METHODS if m in outputs})
            evaluation.write_png(out / "real_grid.png", evaluation.grid(names, columns, cell=(200, 140)))
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
