"""Train the low-light denoiser (:mod:`agents.denoiser`) on clean photos. Example::

    python -m agents.cli.denoiser --data ../shared/data/bsds500/train ../shared/data/bsds500/test \\
        --out agents/models/denoiser.pt
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from agents.denoiser import LowLightDenoiser, save_denoiser, train_denoiser
from rellie_env.cpu import tune_cpu
from rellie_env.images import load_images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.cli.denoiser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of clean, well-exposed photos")
    p.add_argument("--out", required=True, help="where to write the weights (.pt)")
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--features", type=int, default=48)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu()
    try:
        source = load_images([f"dark:{folder}" for folder in args.data])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.time()

    def log(iteration: int, loss: float) -> None:
        print(f"{iteration:6d}  loss {loss:.5f}  {time.time() - start:7.0f} s", flush=True)

    model = train_denoiser(source, args.iterations, args.batch, args.crop, seed=args.seed,
                           model=LowLightDenoiser(args.features, args.layers), log=log)
    print(f"saved {save_denoiser(model, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
