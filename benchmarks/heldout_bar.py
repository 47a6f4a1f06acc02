"""The bar that matters: non-reference loss on held-aside built-in crops, 6 greedy steps.

Compares the input, the best constant policies (one action triple at every pixel, searched over the
whole action set: equal on the three channels, and per channel), the released ReLLIE weights and the
shipped model (or --model). Lower is better; the loss is spatial + 80 exposure + 50 colour, as in the reward.
Usage: python benchmarks/heldout_bar.py [--crops 16] [--size 96] [--steps 6] [--model PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agents import load_default, load_official_rellie, load_policy
from agents.enhance import best_constant_policy, heldout_crops, policy_loss_on
from rellie_env.curves import ActionSet
from rellie_env.losses import image_loss

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rellie_official_model.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", help="a checkpoint (default: the shipped model)")
    parser.add_argument("--official", default=str(OFFICIAL), help="the released ReLLIE model.npz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    x = heldout_crops(args.crops, args.size)
    action_set = ActionSet()
    print(f"{args.crops} held-aside crops of {args.size}x{args.size} (chelsea, coffee), {args.steps} steps; "
          f"non-reference loss, lower is better")
    print(f"{'input (identity)':44s} {float(image_loss(x, x).mean()):7.3f}")
    triple, loss = best_constant_policy(x, args.steps, action_set, per_channel=False)
    print(f"{'best constant policy, same action on R,G,B':44s} {loss:7.3f}  actions {triple}")
    triple, loss = best_constant_policy(x, args.steps, action_set)
    print(f"{'best constant policy, per channel':44s} {loss:7.3f}  actions {triple}")
    if Path(args.official).is_file():
        print(f"{'released ReLLIE weights':44s} {policy_loss_on(load_official_rellie(args.official), x, args.steps):7.3f}")
    else:
        print(f"released ReLLIE weights: {args.official} not found")
    policy = load_policy(args.model) if args.model else load_default()
    print(f"{'ours (' + (args.model or 'shipped model') + ')':44s} {policy_loss_on(policy, x, args.steps):7.3f}")


if __name__ == "__main__":
    main()
