"""Inference speed and memory of :func:`agents.inference.enhance` against Zero-DCE and identity, one run.

Per image (the held-aside built-in photos by default): seconds for our model in full and fast mode, the
Zero-DCE baseline and identity (a copy), all on the same images in the same process; fast mode's PSNR
against full mode; and full mode's compute bound: the multiply-accumulates of the policy path (the
convolutions that choose the actions; the value branch is not run) for ``--steps`` steps, divided by the
throughput of those same convolutions measured alone on the same image shape in this run (each the best
of at least 5 timings: on this shared VM a single timing can be 30 % slow, which would flatter the ratio).
Then the peak memory (max RSS of a fresh process) of enhancing a 24-megapixel photo (6000 x 4000).

Model: the shipped ``agents/models/rellie_default.pt`` when present, else the official ReLLIE weights from
``../shared/reference``, else a randomly initialised network of the released size (same compute); it says
which. Zero-DCE likewise uses ``../shared/reference/zero_dce_epoch99.pth`` or random weights.

Reference (this 2-core machine, one thread): the original ReLLIE code takes about 49 s per 0.2-megapixel
image (6 steps, ~245 s/MP); Zero-DCE with denormals flushed about 0.5 s.

The compute bound's convolutions are timed in the same process after ``tune_cpu()``, as the command-line tools run ``enhance``.

Usage: python benchmarks/inference_speed.py [--threads 1] [--steps 6] [--repeats 3] [--images builtin:test]
           [--memory-steps 1] [--no-memory]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.baselines import zero_dce_enhance  # noqa: E402
from agents.checkpoints import DEFAULT_MODEL, _policy, load_default  # noqa: E402
from agents.inference import FAST_SIZE, enhance  # noqa: E402
from agents.official import load_official_rellie  # noqa: E402
from agents.policies import PixelActorCriticPolicy  # noqa: E402
from agents.zero_dce import ZeroDCE, load_zero_dce  # noqa: E402
from rellie_env.cpu import tune_cpu  # noqa: E402
from rellie_env.images import load_images, to_nchw  # noqa: E402
from rellie_env.metrics import psnr  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference"
ORIGINAL_S_PER_MP = 49.0 / 0.2  # the original ReLLIE code, 6 steps, one thread, this machine
MEMORY_SHAPE = (4000, 6000)  # 24 megapixels


def choose_model() -> tuple[PixelActorCriticPolicy, str]:
    if DEFAULT_MODEL.is_file():
        return load_default(), f"the shipped model ({DEFAULT_MODEL})"
    official = REFERENCE / "rellie_official_model.npz"
    if official.is_file():
        return load_official_rellie(official), f"the official ReLLIE weights ({official}; the shipped model is missing)"
    torch.manual_seed(0)
    return _policy((3, 70, 70), 27).eval(), "a randomly initialised released-size network (no weights found)"


def choose_zero_dce() -> tuple[ZeroDCE, str]:
    path = REFERENCE / "zero_dce_epoch99.pth"
    if path.is_file():
        return load_zero_dce(path), "released weights"
    torch.manual_seed(0)
    return ZeroDCE().eval(), "random weights (same compute; released weights not found)"


def policy_convs(policy: PixelActorCriticPolicy) -> list[nn.Conv2d]:
    """The convolutions that choose the actions: trunk, policy branch, heads (not the value branch)."""
    modules = [*policy.features_extractor.net, *policy.mlp_extractor.policy_net, policy.action_net.conv]
    return [m for m in modules if isinstance(m, nn.Conv2d)]


def macs_per_pixel(convs: list[nn.Conv2d]) -> int:
    return sum(c.kernel_size[0] * c.kernel_size[1] * c.in_channels * c.out_channels // c.groups for c in convs)


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.inference_mode()
def conv_seconds(convs: list[nn.Conv2d], h: int, w: int, repeats: int) -> float:
    """One pass of the policy path's convolutions alone, each on an ``h x w`` input in the layout that
    :func:`agents.enhance.policy_actions` uses (channels-last), best of ``repeats`` per convolution."""
    total = 0.0
    for conv in convs:
        x = torch.rand(1, conv.in_channels, h, w).contiguous(memory_format=torch.channels_last)
        conv(x)  # warm-up
        total += best_time(lambda conv=conv, x=x: conv(x), repeats)
    return total


def memory_child(mode: str, steps: int) -> None:
    """Run in a fresh process: enhance a 24-megapixel photo and print the peak RSS as JSON."""
    policy, _ = choose_model()
    h, w = MEMORY_SHAPE
    photo = load_images("builtin:test").images[1]
    image = cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR)  # float32 RGB, as read_image gives
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    out = enhance(policy, image, steps=steps, fast=mode == "fast")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "steps": steps, "megapixels": h * w / 1e6, "seconds": seconds,
                      "before_mib": before, "peak_mib": peak, "mean": float(out.mean())}))


def measure_memory(mode: str, steps: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--memory-steps", str(steps), "--threads", str(threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory run ({mode}) failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--images", default="builtin:test", help="an image source for rellie_env.images.load_images")
    parser.add_argument("--fast-size", type=float, default=FAST_SIZE)
    parser.add_argument("--memory-steps", type=int, default=1,
                        help="steps of the 24 MP memory runs (the peak does not grow with steps: 1.66 GiB for 2 "
                             "full-mode steps, 1.73 GiB for 1; full mode takes ~2 minutes per step there)")
    parser.add_argument("--no-memory", action="store_true", help="skip the 24-megapixel memory runs")
    parser.add_argument("--child", choices=("full", "fast"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    tune_cpu()  # as rellie-evaluate does: the compute bound below is measured in the same process state
    if args.child:
        memory_child(args.child, args.memory_steps)
        return

    policy, model_name = choose_model()
    zero_dce, zero_dce_name = choose_zero_dce()
    convs = policy_convs(policy)
    mac_px = macs_per_pixel(convs)
    data = load_images(args.images)
    print(f"model: {model_name}")
    print(f"Zero-DCE: {zero_dce_name}")
    print(f"{args.threads} thread(s), {args.steps} steps, fast mode copy {args.fast_size:g}, best of {args.repeats}; "
          f"policy path {mac_px / 1e3:.1f} kMAC per pixel per step")
    header = (f"{'image':<12} {'MP':>6} {'identity':>9} {'Zero-DCE':>9} {'full':>8} {'fast':>7} "
              f"{'speed-up':>8} {'fast PSNR':>9} {'bound':>7} {'full/bound':>10} {'GMAC/s':>7}")
    print(header + "\n" + "-" * len(header))
    rows = []
    for name, image in zip(data.names, data.images):
        h, w = image.shape[:2]
        mp = h * w / 1e6
        t_id = best_time(lambda image=image: np.array(image, copy=True), args.repeats)
        t_zd = best_time(lambda image=image: zero_dce_enhance(zero_dce, image), args.repeats)
        t_full = best_time(lambda image=image: enhance(policy, image, steps=args.steps), args.repeats)
        t_fast = best_time(lambda image=image: enhance(policy, image, steps=args.steps, fast=True,
                                                       fast_size=args.fast_size), args.repeats)

        full = enhance(policy, image, steps=args.steps)
        fast = enhance(policy, image, steps=args.steps, fast=True, fast_size=args.fast_size)
        fast_psnr = float(psnr(to_nchw(fast), to_nchw(full))[0])
        t_conv = conv_seconds(convs, h, w, max(args.repeats, 5))  # the fastest seen: the strictest bound
        bound = args.steps * t_conv
        gmacs = mac_px * h * w / t_conv / 1e9
        rows.append(dict(mp=mp, identity=t_id, zero_dce=t_zd, full=t_full, fast=t_fast, psnr=fast_psnr, bound=bound))
        print(f"{name:<12} {mp:6.3f} {t_id:9.4f} {t_zd:9.3f} {t_full:8.2f} {t_fast:7.3f} {t_full / t_fast:7.1f}x "
              f"{fast_psnr:7.1f}dB {bound:7.2f} {t_full / bound:10.2f} {gmacs:7.1f}")

    total_mp = sum(r["mp"] for r in rows)

    def per_mp(key: str) -> float:
        return sum(r[key] for r in rows) / total_mp

    print("\nseconds per megapixel (all images together):")
    print(f"  full mode {per_mp('full'):.2f} s/MP (compute bound {per_mp('bound'):.2f} s/MP, "
          f"ratio {per_mp('full') / per_mp('bound'):.2f}); "
          f"{ORIGINAL_S_PER_MP / per_mp('full'):.1f}x faster than the original ReLLIE code (~{ORIGINAL_S_PER_MP:.0f} s/MP)")
    print(f"  fast mode {per_mp('fast'):.3f} s/MP ({per_mp('full') / per_mp('fast'):.1f}x full mode; "
          f"{per_mp('zero_dce') / per_mp('fast'):.2f}x Zero-DCE's speed); "
          f"PSNR against full mode: min {min(r['psnr'] for r in rows):.1f} dB")
    print(f"  Zero-DCE  {per_mp('zero_dce'):.3f} s/MP")
    print(f"  identity  {per_mp('identity'):.4f} s/MP")
    if args.no_memory:
        return
    print(f"\npeak memory (max RSS of a fresh process: Python, torch, model, the float32 input and the work) "
          f"enhancing a {MEMORY_SHAPE[1]}x{MEMORY_SHAPE[0]} (24 MP) photo, {args.memory_steps} step(s) "
          "(the peak does not grow with the steps: enhance gives freed memory back after each step of a tiled image):")
    for mode in ("full", "fast"):
        m = measure_memory(mode, args.memory_steps, args.threads)
        print(f"  {mode:<4}: peak {m['peak_mib']:.0f} MiB ({m['peak_mib'] / 1024:.2f} GiB; "
              f"{m['before_mib']:.0f} MiB before enhancing), {m['seconds']:.1f} s for {m['steps']} step(s) "
              f"= {m['seconds'] / m['steps'] / m['megapixels']:.2f} s/MP per step")


if __name__ == "__main__":
    main()
