#!/usr/bin/env python
"""Train a ReLLIE agent on LowLight-v0 with stable-baselines3; the algorithm is a flag.

An *episode* here is one batch: ``--batch`` images run for ``--steps`` steps in parallel, then one
update (A2C) or ``--n-epochs`` passes (PPO). Examples::

    python train_sb3.py                                  # the default recipe, ~10 min on 2 CPU cores
    python train_sb3.py --algo pixel-ppo --episodes 200
    python train_sb3.py --preset adaptive --device cuda  # the shipped adaptive model's recipe, ~3 min on a GPU
    python train_sb3.py --preset rellie-paper --device cuda --episodes 30000   # the released settings
    python train_sb3.py --resume runs/default/checkpoints/latest.zip --episodes 400
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

# Presets: the released settings and the default recipe (see README, "How it learns").
PRESETS: dict[str, dict[str, Any]] = {
    "rellie-paper": dict(
        batch=32, crop=70, steps=10, reward_mode="paper", smoothness_weight=200.0, lr=5e-4, gamma=1.05,
        gae_lambda=1.0, ent_coef=0.01, vf_coef=0.5, max_grad_norm=float("inf"), normalize_advantage=False,
        reward_scale=1.0, alpha_smoothness_coef=0.0, width=64, init_alpha="none", init_alpha_spread=0.15,
        episodes=30000, lr_schedule="constant", color_cast=0.0, min_scale=1.0, global_color=False,
        global_exposure=False, final_credit=False,
    ),
    "default": dict(
        batch=8, crop=64, steps=6, reward_mode="head-delta", smoothness_weight=0.0, lr=5e-4, gamma=1.0,
        gae_lambda=1.0, ent_coef=0.01, vf_coef=0.5, max_grad_norm=1.0, normalize_advantage=True,
        reward_scale=0.2, alpha_smoothness_coef=20.0, width=32, init_alpha="0.3", init_alpha_spread=0.15,
        episodes=150, lr_schedule="linear", color_cast=0.0, min_scale=1.0, global_color=True,
        global_exposure=False, final_credit=True,
    ),
}
# A locally adaptive agent (README, "The adaptive model"): far lower loss on the training photos, about the
# best constant policy's level on the held-out ones (below it with seed 0), at the price of patchy local
# contrast and of fast mode's fidelity. Batches of 32: ~3 min on an H100, ~2 h on 2 CPU cores.
PRESETS["adaptive"] = dict(PRESETS["default"], global_exposure=True, init_alpha_spread=0.5,
                           alpha_smoothness_coef=5.0, min_scale=0.2, batch=32, episodes=650)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from agents.registry import ALGORITHMS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(ALGORITHMS), default="pixel-a2c")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting values of every setting below; a flag given overrides its preset value")
    p.add_argument("--episodes", type=int, help="batches of episodes to train (in total, when resuming)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--out", default="runs/default", help="output folder")
    p.add_argument("--resume", help="an SB3 .zip checkpoint to continue from")
    p.add_argument("--checkpoint-every", type=int, default=25, help="episodes between checkpoints")
    p.add_argument("--eval-every", type=int, default=10, help="episodes between held-out evaluations (0: never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    env = p.add_argument_group("environment")
    env.add_argument("--data", default="builtin", help="builtin, a folder of low-light images, or an image")
    env.add_argument("--batch", type=int, help="images per batch (parallel environments)")
    env.add_argument("--crop", type=int, help="crop size")
    env.add_argument("--steps", type=int, help="steps per episode")
    env.add_argument("--exposure", type=float, default=0.6, help="exposure level E")
    env.add_argument("--reward-mode", choices=["paper", "delta", "pixel", "pixel-delta", "head-delta"],
                     help="head-delta: one reward map per head, and a policy with one value map per head")
    env.add_argument("--spatial-weight", type=float, default=1.0)
    env.add_argument("--exposure-weight", type=float, default=80.0)
    env.add_argument("--color-weight", type=float, default=50.0)
    env.add_argument("--smoothness-weight", type=float, help="weight of the env's smoothness term")
    env.add_argument("--color-cast", type=float, help="random per-channel gain exp(U(-c, c)) when darkening the "
                     "built-in photos (training augmentation)")
    env.add_argument("--min-scale", type=float, help="shrink each training photo by a random factor in "
                     "[min-scale, 1] before cropping (training augmentation: scenes at many scales)")
    env.add_argument("--lead-channel", choices=["0", "1", "2", "none"], default="2",
                     help="channel the others follow (2 = blue, as released; none: no coupling)")
    alg = p.add_argument_group("algorithm")
    alg.add_argument("--lr", type=float)
    alg.add_argument("--lr-schedule", choices=["constant", "linear"],
                     help="linear: decay to 0 at the last episode (a steadier final policy)")
    alg.add_argument("--gamma", type=float)
    alg.add_argument("--gae-lambda", type=float)
    alg.add_argument("--ent-coef", type=float)
    alg.add_argument("--vf-coef", type=float)
    alg.add_argument("--max-grad-norm", type=float)
    alg.add_argument("--normalize-advantage", action=argparse.BooleanOptionalAction, default=None)
    alg.add_argument("--reward-scale", type=float)
    alg.add_argument("--alpha-smoothness-coef", type=float, help="smoothness penalty on the expected alpha maps")
    alg.add_argument("--final-credit", action=argparse.BooleanOptionalAction, default=None,
                     help="reward each action with its share of the episode's final loss (pixel-wise algorithms; "
                     "sets gamma to 0)")
    alg.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the network (pixel-wise algorithms)")
    alg.add_argument("--n-epochs", type=int, default=4, help="PPO epochs per rollout")
    alg.add_argument("--minibatch", type=int, default=None, help="PPO minibatch in images (default: batch*steps/4)")
    alg.add_argument("--clip-range", type=float, default=0.2, help="PPO clip range")
    pol = p.add_argument_group("policy")
    pol.add_argument("--width", type=int, help="channels of the hidden layers (64 as released)")
    pol.add_argument("--init-alpha", help="start as a smooth policy peaked at this alpha (a number), or at the "
                     "best constant action triple on training crops ('best-constant'); 'none': torch's init")
    pol.add_argument("--global-color", action=argparse.BooleanOptionalAction, default=None,
                     help="the trunk also sees the whole image's mean colour (see ReLLIETrunk)")
    pol.add_argument("--global-exposure", action=argparse.BooleanOptionalAction, default=None,
                     help="with --global-color, the trunk also sees the whole image's brightness")
    pol.add_argument("--init-alpha-spread", type=float, help="spread of that start, in alpha units")
    args = p.parse_args(argv)
    pixel_wise = ALGORITHMS[args.algo].pixel_wise
    if args.final_credit and not pixel_wise:
        p.error(f"--final-credit needs a pixel-wise algorithm (pixel-a2c or pixel-ppo), not {args.algo}")
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not pixel_wise:
        args.final_credit = False  # the stock algorithms learn from the env's scalar reward
    if args.final_credit:
        args.gamma = 0.0  # each reward already holds its action's whole effect on the outcome
    if args.init_alpha == "none":
        args.init_alpha = None
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SystemExit(f"error: unknown device {name!r} ({exc})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from rellie_env.images import Degradation

    return dict(
        data=args.data, crop_size=args.crop, max_steps=args.steps, reward_mode=args.reward_mode,
        exposure_level=args.exposure, spatial_weight=args.spatial_weight, exposure_weight=args.exposure_weight,
        color_weight=args.color_weight, smoothness_weight=args.smoothness_weight,
        lead_channel=None if args.lead_channel == "none" else int(args.lead_channel),
        degradation=Degradation(color_cast=args.color_cast), min_scale=args.min_scale,
    )


def build_model(args: argparse.Namespace, device: torch.device):
    from stable_baselines3.common.env_util import make_vec_env

    from stable_baselines3 import PPO

    from agents.policies import PixelActorCriticPolicy
    from agents.registry import ALGORITHMS
    from agents.training import best_constant_alphas
    from agents.wrappers import FlattenActionMap
    from rellie_env.config import EnvConfig
    from rellie_env.env import LowLightEnv
    from rellie_env.vector import LowLightSB3VecEnv

    spec = ALGORITHMS[args.algo]
    if spec.pixel_wise:
        env = LowLightSB3VecEnv(args.batch, device=device, seed=args.seed, **env_kwargs(args))
    else:
        env = make_vec_env(lambda: FlattenActionMap(LowLightEnv(**env_kwargs(args))), n_envs=args.batch, seed=args.seed)
    learning_rate = args.lr if args.lr_schedule == "constant" else (lambda progress: args.lr * progress)
    common = dict(learning_rate=learning_rate, n_steps=args.steps, gamma=args.gamma, gae_lambda=args.gae_lambda,
                  ent_coef=args.ent_coef, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
                  normalize_advantage=args.normalize_advantage)
    if spec.pixel_wise:
        common.update(reward_scale=args.reward_scale, alpha_smoothness_coef=args.alpha_smoothness_coef, bf16=args.bf16,
                      final_credit=args.final_credit)
    if issubclass(spec.cls, PPO):
        common.update(n_epochs=args.n_epochs, clip_range=args.clip_range,
                      batch_size=args.minibatch or max(2, args.batch * args.steps // 4))
    else:
        common["use_rms_prop"] = False  # Adam, as released
    init_alpha = args.init_alpha
    if init_alpha == "best-constant":
        init_alpha = best_constant_alphas(env_kwargs(args), args.steps, args.seed)
        print(f"initial policy: the best constant action triple on training crops, alpha = {init_alpha}")
    elif init_alpha is not None:
        init_alpha = float(init_alpha)
    action_set = dataclasses.asdict(EnvConfig(**env_kwargs(args)).action_set)  # saved with the policy
    policy_kwargs = dict(width=args.width, init_alpha=init_alpha, init_alpha_spread=args.init_alpha_spread,
                         action_set=action_set, per_head=spec.pixel_wise and args.reward_mode == "head-delta",
                         global_color=args.global_color, global_exposure=args.global_color and args.global_exposure)
    if args.resume:
        from agents.checkpoints import load_policy

        load_policy(args.resume)  # a clear error for a bad or foreign file, before SB3's own loader
        model = spec.cls.load(args.resume, env=env, device=device)
    else:
        model = spec.cls(PixelActorCriticPolicy, env, policy_kwargs=policy_kwargs, seed=args.seed, device=device,
                         verbose=0, **common)
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rellie_env.cpu import tune_cpu

    tune_cpu()  # denormals flushed (tiny softmax probabilities slow CPU training 5-50x), freed memory reused

    from stable_baselines3.common.logger import configure

    from agents.checkpoints import save_model, save_weights
    from agents.training import TrainingMonitor, plot_learning_curve

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = build_model(args, device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model.set_logger(configure(str(out), ["csv", "tensorboard"]))
    (out / "config.json").write_text(json.dumps(vars(args), indent=2, default=str))
    done = model.num_timesteps // (args.batch * args.steps)
    monitor = TrainingMonitor(out, args.batch, args.checkpoint_every, args.eval_every, start_episode=done)
    total = args.episodes * args.batch * args.steps
    print(f"training {args.algo} ({args.preset} preset) on {device}: episodes {done} -> {args.episodes}, "
          f"batch {args.batch}, {args.crop}x{args.crop}, {args.steps} steps; output in {out}/")
    try:
        model.learn(total_timesteps=total - model.num_timesteps, callback=monitor, reset_num_timesteps=False,
                    progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        path = save_model(model, out / "checkpoints" / "interrupted.zip")
        print(f"\ninterrupted: checkpoint saved to {path}; continue with --resume {path}")
        return 130
    save_model(model, out / "model.zip")
    save_weights(model.policy, out / "policy.pt")
    plot_learning_curve(out / "learning_curve.csv", out / "learning_curve.png")
    print(monitor.summary())
    print(f"saved {out / 'model.zip'}, {out / 'policy.pt'}, {out / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
