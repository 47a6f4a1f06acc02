"""Environment throughput: pixel-steps per second, random actions, reward included.

Compares one LowLightEnv looped B times with the batched torch env (CPU, and CUDA when present).
Usage: python benchmarks/env_throughput.py [--batch 32] [--size 70] [--steps 100] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rellie_env.batched import BatchedLowLightEnv
from rellie_env.cpu import tune_cpu
from rellie_env.env import LowLightEnv


def looped_single(batch: int, size: int, steps: int) -> float:
    envs = [LowLightEnv(crop_size=size, max_steps=10**9) for _ in range(batch)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 27, (steps, batch, 3, size, size))
    start = time.perf_counter()
    for t in range(steps):
        for e, a in zip(envs, actions[t]):
            e.step(a)
    return batch * size * size * steps / (time.perf_counter() - start)


def batched(batch: int, size: int, steps: int, device: str) -> float:
    env = BatchedLowLightEnv(batch, device, crop_size=size, max_steps=10**9)
    env.reset(seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    actions = torch.randint(0, 27, (steps, batch, 3, size, size), generator=gen, device=device, dtype=torch.uint8)
    env.step(actions[0])  # warm-up (CUDA kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t])
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * size * size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=70)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    tune_cpu()  # as rellie-train does: denormals flushed, freed memory reused
    b, s, n = args.batch, args.size, args.steps
    print(f"B={b}, {s}x{s}, {n} steps, random actions, reward included ('paper' mode)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        single = looped_single(b, s, n)
        print(f"{threads} thread(s): LowLightEnv looped B times (cpu) {single / 1e6:8.2f} M pixel-steps/s")
        cpu = batched(b, s, n, "cpu")
        print(f"{threads} thread(s): BatchedLowLightEnv (cpu)         {cpu / 1e6:8.2f} M pixel-steps/s"
              f"  = {cpu / single:4.1f}x looped")
    if torch.cuda.is_available():
        gpu = batched(b, s, n, "cuda")
        print(f"BatchedLowLightEnv (cuda)                     {gpu / 1e6:8.2f} M pixel-steps/s  = {gpu / single:4.1f}x looped")
    else:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
