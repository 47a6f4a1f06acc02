"""Environment throughput as users run it, and the bare step.

* User path: ``gym.make_vec("LowLight-v0", num_envs=B)`` with its same-step autoreset, 10-step episodes and
  numpy actions from ``action_space.sample()``, against one ``gym.make("LowLight-v0")`` looped B times with
  its own resets; resets, crops and darkening of the built-in photos included.
* Bare step: the batched torch env's step without resets or numpy, against the single env's.

Prints the machine, then pixel-steps per second and the ratios, one run.
Usage: python benchmarks/env_throughput.py [--batch 32] [--size 70] [--episodes 6] [--threads 1]
"""
from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np
import torch

import rellie_env  # noqa: F401  (registers LowLight-v0)
from rellie_env.batched import BatchedLowLightEnv
from rellie_env.cpu import tune_cpu

EPISODE = 10


def user_single(batch: int, size: int, episodes: int) -> float:
    """One env looped ``batch`` times, each with its own episodes and resets; actions from its action space."""
    envs = [gym.make("LowLight-v0", crop_size=size, max_steps=EPISODE) for _ in range(batch)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
        env.action_space.seed(i)
    start = time.perf_counter()
    for _ in range(episodes * EPISODE):
        for env in envs:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
    return batch * size * size * episodes * EPISODE / (time.perf_counter() - start)


def user_vector(batch: int, size: int, episodes: int, device: str = "cpu") -> float:
    """``gym.make_vec`` (the batched env, same-step autoreset) with numpy actions from its action space."""
    envs = gym.make_vec("LowLight-v0", num_envs=batch, crop_size=size, max_steps=EPISODE, device=device)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    envs.step(envs.action_space.sample())  # warm-up (allocator, CUDA kernels)
    start = time.perf_counter()
    for _ in range(episodes * EPISODE):
        envs.step(envs.action_space.sample())
    return batch * size * size * episodes * EPISODE / (time.perf_counter() - start)


def bare_single(size: int, steps: int) -> float:
    env = gym.make("LowLight-v0", crop_size=size, max_steps=10**9).unwrapped
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 27, (steps, 3, size, size))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return size * size * steps / (time.perf_counter() - start)


def bare_batched(batch: int, size: int, steps: int, device: str) -> float:
    env = BatchedLowLightEnv(batch, device, crop_size=size, max_steps=10**9)
    env.reset(seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    actions = torch.randint(0, 27, (steps, batch, 3, size, size), generator=gen, device=device, dtype=torch.uint8)
    env.step(actions[0])  # warm-up
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
    parser.add_argument("--episodes", type=int, default=6, help="episodes of 10 steps per environment")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    tune_cpu()  # as rellie-train does: denormals flushed, freed memory reused
    b, s, n = args.batch, args.size, args.episodes
    start = time.perf_counter()
    gym.make("LowLight-v0")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}; B = {b}, {s}x{s}, "
          f"{n} episodes of {EPISODE} steps, 'paper' reward; gym.make took {time.perf_counter() - start:.2f} s")
    for threads in args.threads:
        torch.set_num_threads(threads)
        single = user_single(b, s, n)
        vector = user_vector(b, s, n)
        print(f"{threads} thread(s), user path: gym.make looped {single / 1e6:6.2f} M pixel-steps/s, "
              f"gym.make_vec {vector / 1e6:6.2f} M pixel-steps/s = {vector / single:4.1f}x")
        one = bare_single(s, n * EPISODE * 4)
        many = bare_batched(b, s, n * EPISODE, "cpu")
        print(f"{threads} thread(s), bare step: LowLightEnv {one / 1e6:6.2f} M pixel-steps/s, "
              f"BatchedLowLightEnv {many / 1e6:6.2f} M pixel-steps/s = {many / one:4.1f}x")
    if torch.cuda.is_available():
        print(f"cuda: gym.make_vec {user_vector(b, s, n, 'cuda') / 1e6:.2f} M pixel-steps/s, "
              f"bare batched step {bare_batched(b, s, n * EPISODE, 'cuda') / 1e6:.2f} M pixel-steps/s")
    else:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
