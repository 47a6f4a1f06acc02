"""Training speed of PixelA2C and PixelPPO: seconds per episode, pixel-steps per second, compute bound; with
``--ddp N``, the throughput and scaling efficiency of data-parallel training over N ranks.

An episode is one batch (default 8 images of 70x70) run for 10 steps plus its update. The compute bound
is the network's multiply-accumulates per episode (acting: one forward per step; learning: forward and
backward, counted as 3 forwards, per pass over the rollout) divided by the convolution throughput measured
in the same run, on the same tensor shapes (a forward+backward of the same network at the same batch, in
the same precision). Each algorithm runs in float32 and under bfloat16 autocast (``bf16=True``).

``--ddp N`` measures instead, in float32, one process and N ranks of ``torchrun`` (``agents.distributed``: gloo
on the CPU, NCCL on GPUs), each rank with ``--batch`` images and ``--threads`` thread(s), so the effective batch
is N x batch. Images per second = images trained per episode (all ranks) / seconds per episode, after a
warm-up episode; scaling efficiency = images/s with N ranks / (N x images/s of one process). On a machine
with fewer GPUs than ranks, the ranks share the GPUs (rank r on GPU r mod count) and talk over gloo, since NCCL
refuses two ranks on one GPU: the table says so, and the efficiency then measures the sharing, not scaling.
Usage: python benchmarks/train_speed.py [--batch 8] [--size 70] [--steps 10] [--width 64] [--episodes 2]
                                       [--threads 1] [--devices cpu cuda] [--ddp N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
import torch.distributed as dist

from agents import PixelA2C, PixelPPO, distributed
from agents.policies import PixelActorCriticPolicy
from rellie_env.cpu import tune_cpu
from rellie_env.vector import LowLightSB3VecEnv

ALGOS = ("PixelA2C", "PixelPPO")
RESULT = "ddp-result "  # the start of rank 0's line for the parent


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


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def machine(devices: list[str]) -> str:
    """The CPU's model and cores, torch's version, and the GPU where one is measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
           if "cuda" in devices and torch.cuda.is_available() else "")
    return f"{cpu} ({os.cpu_count()} cores){gpu}, torch {torch.__version__}"


def episode_seconds(algo: str, args: argparse.Namespace, device: str | torch.device,
                    bf16: bool) -> tuple[float, PixelA2C | PixelPPO]:
    """Seconds per episode of ``algo`` after a warm-up episode, and the model. In a distributed run each rank
    takes its own part of the images (``first_index``, as ``rellie-train`` does) and times the same episodes."""
    env = LowLightSB3VecEnv(args.batch, device=device, seed=0, first_index=distributed.rank() * args.batch,
                            crop_size=args.size, max_steps=args.steps)
    kwargs = dict(n_epochs=args.ppo_epochs, batch_size=args.batch * args.steps // 4) if algo == "PixelPPO" else {}
    cls = PixelA2C if algo == "PixelA2C" else PixelPPO
    model = cls(env=env, n_steps=args.steps, policy_kwargs=dict(width=args.width), device=device, seed=0, bf16=bf16,
                **kwargs)
    per_episode = args.batch * args.steps
    model.learn(per_episode)  # warm-up
    sync(device)
    distributed.barrier()
    start = time.perf_counter()
    model.learn(per_episode * args.episodes, reset_num_timesteps=False)
    sync(device)
    return (time.perf_counter() - start) / args.episodes, model


def measure(algo: str, args: argparse.Namespace, device: str, bf16: bool) -> None:
    seconds, model = episode_seconds(algo, args, device, bf16)
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


def rank_device(kind: str) -> torch.device:
    """This rank's device, its process group joined: ``agents.distributed.setup`` (as ``rellie-train``), except
    with more ranks than GPUs, where rank r shares GPU r mod count and the ranks talk over gloo (NCCL refuses
    two ranks on one GPU)."""
    if kind == "cuda" and int(os.environ["LOCAL_WORLD_SIZE"]) > torch.cuda.device_count():
        dist.init_process_group("gloo")
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return distributed.setup(kind)


def ddp_worker(args: argparse.Namespace) -> None:
    """One rank under ``torchrun``: time each algorithm; rank 0 prints the slowest rank's seconds per episode."""
    device = rank_device(args.devices[0])
    torch.set_num_threads(args.threads)
    tune_cpu()
    seconds = {algo: max(distributed.gather(episode_seconds(algo, args, device, bf16=False)[0])) for algo in ALGOS}
    if distributed.is_main():
        backend = dist.get_backend() if dist.is_initialized() else "none"
        print(RESULT + json.dumps(dict(seconds=seconds, backend=backend)), flush=True)
    distributed.barrier()
    distributed.shutdown()


def launch_ranks(args: argparse.Namespace, device: str) -> dict:
    """Run this script's ``--ddp-worker`` on ``args.ddp`` ranks with ``torchrun`` and return rank 0's result."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ddp),
               os.path.abspath(__file__), "--batch", str(args.batch), "--size", str(args.size), "--steps",
               str(args.steps), "--width", str(args.width), "--episodes", str(args.episodes), "--ppo-epochs",
               str(args.ppo_epochs), "--threads", str(args.threads), "--devices", device, "--ddp", str(args.ddp),
               "--ddp-worker"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)  # stderr: to the terminal
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT)]
    if result.returncode != 0 or not lines:
        sys.exit(f"torchrun with {args.ddp} ranks failed (exit {result.returncode}):\n{result.stdout[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def measure_ddp(args: argparse.Namespace, device: str) -> None:
    """One process, then ``args.ddp`` ranks: images per second and scaling efficiency, in float32."""
    one = {algo: episode_seconds(algo, args, device, bf16=False)[0] for algo in ALGOS}
    ranks = launch_ranks(args, device)
    shared = device == "cuda" and args.ddp > torch.cuda.device_count()
    how = (f"{args.ddp} ranks sharing {torch.cuda.device_count()} GPU(s)" if shared
           else f"{args.ddp} ranks on {args.ddp} GPUs" if device == "cuda"
           else f"{args.ddp} ranks of {args.threads} thread(s)")
    print(f"\ndata-parallel fp32 on {device}: {how}, {ranks['backend']}; effective batch = ranks x {args.batch}")
    if shared:
        print("(ranks share a GPU: the efficiency measures the sharing, not scaling over GPUs)")
    print(f"{'algo':9s} {'ranks':>5s} {'batch/rank':>10s} {'batch':>5s} {'s/episode':>9s} {'images/s':>9s} "
          f"{'efficiency':>10s}")
    for algo in ALGOS:
        base = args.batch / one[algo]
        for n, seconds in ((1, one[algo]), (args.ddp, ranks["seconds"][algo])):
            images = n * args.batch / seconds
            print(f"{algo:9s} {n:5d} {args.batch:10d} {n * args.batch:5d} {seconds:9.3f} {images:9.2f} "
                  f"{images / (n * base):10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="images per episode (per rank with --ddp)")
    parser.add_argument("--size", type=int, default=70)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--width", type=int, default=64, help="64 = the released network")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (per rank with --ddp)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=["cpu", "cuda"],
                        help="where to measure (cuda only when present)")
    parser.add_argument("--ddp", type=int, metavar="N",
                        help="measure data-parallel training over N ranks against one process")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)  # one rank, under torchrun
    args = parser.parse_args()
    if args.ddp is not None and args.ddp < 1:
        parser.error(f"--ddp must be positive, got {args.ddp}")
    if args.ddp_worker:
        ddp_worker(args)
        return
    torch.set_num_threads(args.threads)
    tune_cpu()  # as rellie-train does: denormals flushed, freed memory reused
    print(machine(args.devices))
    print(f"batch {args.batch}, {args.size}x{args.size}, {args.steps} steps, width {args.width}, "
          f"{args.threads} thread(s); PPO: {args.ppo_epochs} epochs")
    devices = [d for d in args.devices if d == "cpu" or torch.cuda.is_available()]
    for device in devices:
        if args.ddp:
            measure_ddp(args, device)
            continue
        for bf16 in (False, True):
            for algo in ALGOS:
                measure(algo, args, device, bf16)
    if "cuda" in args.devices and "cuda" not in devices:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
