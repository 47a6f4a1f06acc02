"""Training speed of PixelA2C and PixelPPO: seconds per episode, pixel-steps per second, compute bound.

An episode is one batch (default 8 images of 70x70) run for 10 steps plus its update. The compute bound
is the network's multiply-accumulates per episode (acting: one forward per step; learning: forward and
backward, counted as 3 forwards, per pass over the rollout) divided by the convolution throughput measured
in the same run, on the same tensor shapes (a forward+backward of the same network at the same batch, in
the same precision). Each algorithm runs in float32 and under bfloat16 autocast (``bf16=True``).
Usage: python benchmarks/train_speed.py [--batch 8] [--size 70] [--steps 10] [--width 64] [--episodes 2]
                                       [--devices cpu cuda]
"""
from __future__ import annotations

import argparse
import time

import torch

from agents import PixelA2C, PixelPPO
from agents.policies import PixelActorCriticPolicy
from rellie_env.cpu import tune_cpu
from rellie_env.vector import LowLightSB3VecEnv


def macs_per_pixel(policy: PixelActorCriticPolicy) -> int:
    """Multiply-accumulates per pixel of one forward pass (every conv keeps the image size)."""
    return sum(m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
               for m in policy.modules() if isinstance(m, torch.nn.Conv2d))


def conv_throughput(policy: PixelActorCriticPolicy, batch: int, size: int, device: str, repeats: int = 3) -> float:
    """Measured MAC/s of a forward+backward of the policy network on (batch, 3, size, size)."""
    obs = torch.rand(batch, 3, size, size, device=device)
    actions = torch.zeros(batch, 3, size, size, dtype=torch.uint8, device=device)

    def once() -> None:
        values, log_probs, entropy, _ = policy.evaluate_pixels(obs, actions)
        (values.mean() + log_probs.mean() + entropy.mean()).backward()

    once()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return 3 * macs_per_pixel(policy) * batch * size * size / seconds


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(algo: str, args: argparse.Namespace, device: str, bf16: bool) -> None:
    env = LowLightSB3VecEnv(args.batch, device=device, seed=0, crop_size=args.size, max_steps=args.steps)
    kwargs = dict(n_epochs=args.ppo_epochs, batch_size=args.batch * args.steps // 4) if algo == "PixelPPO" else {}
    cls = PixelA2C if algo == "PixelA2C" else PixelPPO
    model = cls(env=env, n_steps=args.steps, policy_kwargs=dict(width=args.width), device=device, seed=0, bf16=bf16,
                **kwargs)
    per_episode = args.batch * args.steps
    model.learn(per_episode)  # warm-up
    sync(device)
    start = time.perf_counter()
    model.learn(per_episode * args.episodes, reset_num_timesteps=False)
    sync(device)
    seconds = (time.perf_counter() - start) / args.episodes
    pixels = args.batch * args.size * args.size
    passes = args.steps + 3 * args.steps * (args.ppo_epochs if algo == "PixelPPO" else 1)
    macs = macs_per_pixel(model.policy) * pixels * passes
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        throughput = conv_throughput(model.policy, args.batch, args.size, device)
    bound = macs / throughput
    precision = "bf16" if bf16 else "fp32"
    print(f"{algo:9s} {device:4s} {precision} {seconds:7.2f} s/episode  "
          f"{pixels * args.steps / seconds / 1e6:6.3f} M pixel-steps/s  "
          f"{macs / 1e9:6.0f} GMAC/episode  conv {throughput / 1e9:6.1f} GMAC/s  bound {bound:6.2f} s  "
          f"= {seconds / bound:4.2f}x bound")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=70)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--width", type=int, default=64, help="64 = the released network")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=["cpu", "cuda"],
                        help="where to measure (cuda only when present)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu()  # as rellie-train does: denormals flushed, freed memory reused
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.steps} steps, width {args.width}, "
          f"{args.threads} thread(s); PPO: {args.ppo_epochs} epochs")
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    for device in devices:
        for bf16 in (False, True):
            for algo in ("PixelA2C", "PixelPPO"):
                measure(algo, args, device, bf16)
    if "cuda" in args.devices and "cuda" not in devices:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
