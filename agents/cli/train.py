"""Train a ReLLIE agent on LowLight-v0 with stable-baselines3; the algorithm is a flag.

An *episode* here is one batch: ``--batch`` images run for ``--steps`` steps in parallel, then one update
(A2C) or ``--n-epochs`` passes (PPO). Settings come from a preset (``--preset``, a JSON file in
``agents/configs/``) or a config file (``--config``, e.g. a run's own ``config.json``); a flag given on the
command line overrides its entry. Examples::

    rellie-train                                          # the default recipe on the built-in photos
    rellie-train --algo pixel-ppo --episodes 200
    rellie-train --preset rellie-paper --device cuda      # the released settings
    rellie-train --config runs/default/config.json --seed 1 --out runs/seed1
    rellie-train --resume runs/default --episodes 400     # continue a run (its own settings)
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(p.stem for p in CONFIGS.glob("*.json"))


def optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def lead_channel(text: str) -> int | None:
    if text.lower() == "none":
        return None
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"must be 0, 1, 2 or none, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Flag:
    """A command-line flag and the config entry it sets (``section.key``)."""

    name: str
    path: str
    help: str
    type: Callable | None = None
    kind: str = "value"  # "value", "bool" (--x / --no-x), "list" or "pair"
    choices: tuple | None = None


FLAGS = (
    Flag("--algo", "algo", "the algorithm", choices=("pixel-a2c", "pixel-ppo", "a2c", "ppo")),
    Flag("--episodes", "episodes", "batches of episodes to train (in total, when resuming)", int),
    Flag("--batch", "batch", "images per batch (parallel environments)", int),
    Flag("--seed", "seed", "seed of the run (the policy's init, the data stream, the actions)", int),
    Flag("--checkpoint-every", "checkpoint_every", "batches between checkpoints (checkpoints/latest.zip)", int),
    Flag("--data", "env.data", "image sources: builtin, a folder of real low-light photos, dark:FOLDER (clean "
         "photos, darkened), each optionally @WEIGHT (share of episodes)", kind="list"),
    Flag("--crop", "env.crop_size", "crop size", int),
    Flag("--steps", "env.max_steps", "steps per episode", int),
    Flag("--reward-mode", "env.reward_mode", "the env's reward", choices=("paper", "delta", "pixel", "pixel-delta",
                                                                          "head-delta")),
    Flag("--exposure", "env.exposure_level", "target brightness E of the loss", float),
    Flag("--exposure-range", "env.exposure_range", "LO HI: draw E per episode from [LO, HI]; the policy sees E and "
         "enhances to any E of the range", float, kind="pair"),
    Flag("--exposure-patch", "env.exposure_patch", "patch side of the exposure term", int),
    Flag("--spatial-weight", "env.spatial_weight", "weight of spatial consistency", float),
    Flag("--exposure-weight", "env.exposure_weight", "weight of the exposure term", float),
    Flag("--color-weight", "env.color_weight", "weight of the colour term", float),
    Flag("--smoothness-weight", "env.smoothness_weight", "weight of the env's smoothness term on sampled maps", float),
    Flag("--color-mode", "env.color_mode", "colour term", choices=("grey-world", "ratio")),
    Flag("--min-scale", "env.min_scale", "shrink each photo by a random factor in [min-scale, 1] before cropping",
         float),
    Flag("--fit-scale", "env.fit_scale", "resize each photo so its shorter side is crop x [1, fit-scale] before "
         "cropping (crops show most of the scene)", float),
    Flag("--statistics-weight", "env.statistics_weight", "weight of the natural log-brightness statistics term",
         float),
    Flag("--chroma-weight", "env.chroma_weight", "weight of the power-law chroma term", float),
    Flag("--lead-channel", "env.lead_channel", "channel the others follow (2 = blue, as released; none: no "
         "coupling)", lead_channel),
    Flag("--lr", "algorithm.learning_rate", "learning rate", float),
    Flag("--lr-schedule", "algorithm.lr_schedule", "linear: decay to 0 at the last episode",
         choices=("constant", "linear")),
    Flag("--gamma", "algorithm.gamma", "discount (default: the algorithm's; 0 with final credit)", float),
    Flag("--gae-lambda", "algorithm.gae_lambda", "GAE lambda", float),
    Flag("--ent-coef", "algorithm.ent_coef", "entropy bonus", float),
    Flag("--vf-coef", "algorithm.vf_coef", "value loss weight", float),
    Flag("--max-grad-norm", "algorithm.max_grad_norm", "gradient clipping (none: off)", optional_float),
    Flag("--normalize-advantage", "algorithm.normalize_advantage", "normalise advantages", kind="bool"),
    Flag("--reward-scale", "algorithm.reward_scale", "factor on the rewards (pixel-wise algorithms)", float),
    Flag("--alpha-smoothness-coef", "algorithm.alpha_smoothness_coef", "smoothness penalty on the expected alpha "
         "maps (pixel-wise algorithms)", float),
    Flag("--final-credit", "algorithm.final_credit", "reward each action with its share of the episode's final "
         "loss (pixel-wise algorithms; gamma 0)", kind="bool"),
    Flag("--bf16", "algorithm.bf16", "bfloat16 autocast of the network (pixel-wise algorithms)", kind="bool"),
    Flag("--n-epochs", "algorithm.n_epochs", "PPO epochs per rollout", int),
    Flag("--minibatch", "algorithm.batch_size", "PPO minibatch in images (default: batch*steps/4)", int),
    Flag("--clip-range", "algorithm.clip_range", "PPO clip range", float),
    Flag("--width", "policy.width", "channels of the hidden layers (64 as released)", int),
    Flag("--init-alpha", "policy.init_alpha", "start as a smooth policy peaked at this alpha (none: torch's init)",
         optional_float),
    Flag("--init-alpha-spread", "policy.init_alpha_spread", "spread of that start, in alpha units", float),
    Flag("--global-color", "policy.global_color", "the trunk also sees the whole image's mean colour", kind="bool"),
    Flag("--global-exposure", "policy.global_exposure", "with --global-color, also the image's brightness",
         kind="bool"),
    Flag("--val-data", "validation.data", "images with ground truth to follow fidelity on (builtin:test, "
         "dark:FOLDER)"),
    Flag("--eval-every", "validation.every", "batches between validations (0: never)", int),
)
PIXEL_ONLY = ("reward_scale", "alpha_smoothness_coef", "final_credit", "bf16")
PPO_ONLY = ("n_epochs", "batch_size", "clip_range")
# What a resumed run may change; every other setting is the run's own.
RESUMABLE = ("episodes", "checkpoint_every", "validation.every")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The runtime options and the flags given explicitly (``{config path: value}``)."""
    p = argparse.ArgumentParser(prog="rellie-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=PRESETS, help="settings to start from (default: default)")
    source.add_argument("--config", help="a JSON config file (a preset's format; a run's config.json)")
    p.add_argument("--out", default="runs/default", help="output folder (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    p.add_argument("--resume", help="a run folder (or a checkpoint .zip in it) to continue with its own settings")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    groups = {name: p.add_argument_group(name) for name in ("env", "algorithm", "policy", "validation")}
    for flag in FLAGS:
        group = groups.get(flag.path.partition(".")[0], p)
        dest = flag.path.replace(".", "__")
        if flag.kind == "bool":
            group.add_argument(flag.name, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=flag.help)
        elif flag.kind == "list":
            group.add_argument(flag.name, dest=dest, nargs="+", default=None, help=flag.help)
        elif flag.kind == "pair":
            group.add_argument(flag.name, dest=dest, nargs=2, type=flag.type, default=None, metavar=("LO", "HI"),
                               help=flag.help)
        else:
            group.add_argument(flag.name, dest=dest, type=flag.type, choices=flag.choices, default=None, help=flag.help)
    args = p.parse_args(argv)
    given = {f.path: getattr(args, f.path.replace(".", "__")) for f in FLAGS}
    return args, {k: v for k, v in given.items() if v is not None}


def get(config: dict, path: str) -> Any:
    section, _, key = path.rpartition(".")
    return (config.get(section, {}) if section else config).get(key)


def put(config: dict, path: str, value: Any) -> None:
    section, _, key = path.rpartition(".")
    (config.setdefault(section, {}) if section else config)[key] = value


def merged(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def read_config(path: Path) -> dict:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"config file {str(path)!r} could not be read: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config file {str(path)!r} must hold a JSON object")
    return config


def resolve_config(args: argparse.Namespace, given: dict[str, Any]) -> dict:
    """The run's settings: the preset (or config file, over the default preset), then the flags given."""
    config = read_config(CONFIGS / "default.json")
    if args.config:
        config = merged(config, read_config(Path(args.config)))
    elif args.preset:
        config = read_config(CONFIGS / f"{args.preset}.json")
    for path, value in given.items():
        put(config, path, value)
    check_config(config)
    return config


def check_config(config: dict) -> None:
    """Refuse settings that cannot make a run, naming them, before anything is written."""
    from rellie_env.config import EnvConfig

    for key in ("episodes", "batch", "checkpoint_every"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "checkpoint_every" else 1):
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if config.get("algo") not in ("pixel-a2c", "pixel-ppo", "a2c", "ppo"):
        raise ValueError(f"algo must be pixel-a2c, pixel-ppo, a2c or ppo, got {config.get('algo')!r}")
    every = get(config, "validation.every")
    if not isinstance(every, int) or every < 0:
        raise ValueError(f"validation.every must be a non-negative integer, got {every!r}")
    try:
        EnvConfig.from_kwargs(**config["env"])
    except TypeError as exc:
        raise ValueError(f"env: {exc}") from None
    algorithm_kwargs(config, config["algo"].startswith("pixel"), config["algo"].endswith("ppo"))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
    return device


def algorithm_kwargs(config: dict, pixel_wise: bool, ppo: bool) -> dict[str, Any]:
    """The algorithm's constructor arguments from the config's ``algorithm`` section."""
    settings = dict(config["algorithm"])
    schedule = settings.pop("lr_schedule", "constant")
    lr = settings.pop("learning_rate")
    if schedule not in ("constant", "linear"):
        raise ValueError(f"algorithm.lr_schedule must be constant or linear, got {schedule!r}")
    kwargs: dict[str, Any] = {"learning_rate": lr if schedule == "constant" else LinearSchedule(lr),
                              "n_steps": config["env"]["max_steps"]}
    for key, value in settings.items():
        if key in PIXEL_ONLY and not pixel_wise:
            continue  # the stock algorithms learn from the env's scalar reward
        if key in PPO_ONLY and not ppo:
            raise ValueError(f"algorithm.{key} is a PPO setting (--algo pixel-ppo or ppo)")
        if key == "max_grad_norm" and value is None:
            value = float("inf")
        if value is not None:
            kwargs[key] = value
    if ppo and "batch_size" not in kwargs:
        kwargs["batch_size"] = max(2, config["batch"] * config["env"]["max_steps"] // 4)
    if not ppo:
        kwargs["use_rms_prop"] = False  # Adam, as released
    return kwargs


class LinearSchedule:
    """Learning rate decaying linearly to 0 at the last episode (a picklable SB3 schedule)."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, progress_remaining: float) -> float:
        return self.start * progress_remaining


def build_env(config: dict, device: torch.device, pixel_wise: bool, first_index: int = 0):
    from stable_baselines3.common.env_util import make_vec_env

    from agents.wrappers import FlattenActionMap
    from rellie_env.env import LowLightEnv
    from rellie_env.vector import LowLightSB3VecEnv

    env_kwargs = dict(config["env"])
    if pixel_wise:
        return LowLightSB3VecEnv(config["batch"], device=device, seed=config["seed"], first_index=first_index,
                                 **env_kwargs)
    return make_vec_env(lambda: FlattenActionMap(LowLightEnv(**env_kwargs)), n_envs=config["batch"], seed=config["seed"])


def build_model(config: dict, device: torch.device, resume: Path | None = None, first_index: int = 0):
    """The algorithm and its env (``first_index``: as for :class:`~rellie_env.vector.LowLightSB3VecEnv`), or the
    checkpoint ``resume``."""
    from agents.checkpoints import load_policy
    from agents.policies import PixelActorCriticPolicy
    from agents.registry import ALGORITHMS
    from rellie_env.config import EnvConfig

    spec = ALGORITHMS[config["algo"]]
    ppo = config["algo"].endswith("ppo")
    env = build_env(config, device, spec.pixel_wise, first_index)
    kwargs = algorithm_kwargs(config, spec.pixel_wise, ppo)
    if resume is not None:
        load_policy(resume)  # a clear error for a bad or foreign file, before SB3's own loader
        return spec.cls.load(resume, env=env, device=device)
    env_config = EnvConfig.from_kwargs(**config["env"])
    policy_kwargs = dict(config["policy"], action_set=dataclasses.asdict(env_config.action_set),
                         per_head=spec.pixel_wise and env_config.reward_mode == "head-delta",
                         exposure=default_exposure(env_config), exposure_range=env_config.exposure_range)
    policy_kwargs["global_exposure"] = policy_kwargs["global_color"] and policy_kwargs["global_exposure"]
    return spec.cls(PixelActorCriticPolicy, env, policy_kwargs=policy_kwargs, seed=config["seed"], device=device,
                    verbose=0, **kwargs)


def default_exposure(env_config) -> float:
    """The E a policy enhances to unless told otherwise: the env's exposure level, or for an env with a range
    the level if it lies in it, else the range's middle."""
    level = env_config.weights.exposure_level
    if env_config.exposure_range is None:
        return level
    lo, hi = env_config.exposure_range
    return level if lo <= level <= hi else (lo + hi) / 2


# -- output folder and resuming -----------------------------------------------------------------------------

def check_out(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty output folder unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {str(out)!r} already holds a run; choose a new folder, --overwrite it, or "
                         f"--resume {out}")


def prepare_out(out: Path, overwrite: bool) -> None:
    """An empty output folder (what ``overwrite`` allows is removed); check it can be written."""
    check_out(out, overwrite)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {str(out)!r} cannot be written: {exc.strerror or exc}") from None


def run_folder(resume: str) -> tuple[Path, Path]:
    """The run folder and its checkpoint to resume from: a folder (its ``checkpoints/latest.zip``), or a
    checkpoint ``.zip`` inside a run folder."""
    path = Path(resume)
    if path.is_dir():
        out, checkpoint = path, path / "checkpoints" / "latest.zip"
    elif path.suffix == ".zip" and path.is_file():
        out = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        checkpoint = path
    else:
        raise ValueError(f"--resume takes a run folder or a checkpoint .zip of one, got {resume!r}"
                         + (" (a .pt file holds weights only: nothing to continue)" if path.suffix == ".pt" else ""))
    if not (out / "config.json").is_file():
        raise ValueError(f"{str(out)!r} is not a run folder of rellie-train (no config.json)")
    if not checkpoint.is_file():
        raise ValueError(f"{str(out)!r} has no checkpoint to resume from ({checkpoint.name})")
    return out, checkpoint


def resumed_config(out: Path, given: dict[str, Any]) -> dict:
    """The run's own config; a flag given may change only :data:`RESUMABLE` settings."""
    config = read_config(out / "config.json")
    for path, value in given.items():
        if path not in RESUMABLE and get(config, path) != value:
            flag = next(f.name for f in FLAGS if f.path == path)
            raise ValueError(f"{flag} {value} conflicts with the run's own setting ({get(config, path)!r}); "
                             "a resumed run keeps its settings (start a new run with --config to change them)")
        put(config, path, value)
    check_config(config)
    return config


def truncate_csv(path: Path, column: str, last: int) -> None:
    """Drop the rows of ``path`` whose ``column`` exceeds ``last`` (batches done after the checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or column not in rows[0]:
        return
    k = rows[0].index(column)
    keep = [rows[0]] + [r for r in rows[1:] if r[k] == "" or float(r[k]) <= last]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(keep)


def main(argv: list[str] | None = None) -> int:
    args, given = parse_args(argv)
    try:
        return run(args, given)
    except (ValueError, OSError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, given: dict[str, Any]) -> int:
    from agents import distributed

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    if args.resume:
        if args.preset or args.config or args.overwrite:
            raise ValueError("--resume continues a run with its own settings: no --preset, --config or --overwrite")
        out, checkpoint = run_folder(args.resume)
        config = resumed_config(out, given)
    else:
        out, checkpoint = Path(args.out), None
        config = resolve_config(args, given)
    if not config["algo"].startswith("pixel"):
        for key in ("algorithm.final_credit", "algorithm.bf16"):
            if given.get(key):
                raise ValueError(f"--{key.partition('.')[2].replace('_', '-')} needs a pixel-wise algorithm "
                                 f"(pixel-a2c or pixel-ppo), not {config['algo']}")
        if distributed.launched():
            raise ValueError("torchrun needs a pixel-wise algorithm (pixel-a2c or pixel-ppo)")
    device = distributed.setup(args.device) if distributed.launched() else pick_device(args.device)
    main_rank = distributed.is_main()
    if checkpoint is None:
        check_out(out, args.overwrite)  # on every rank, so that all stop alike
        if main_rank:
            prepare_out(out, args.overwrite)
        distributed.barrier()
    if args.threads:
        torch.set_num_threads(args.threads)
    from rellie_env.cpu import tune_cpu

    tune_cpu()  # denormals flushed (tiny softmax probabilities slow CPU training 5-50x), freed memory reused

    from agents.checkpoints import save_model, save_weights
    from agents.evaluation import ValidationCrops
    from agents.training import TrainingMonitor, plot_learning_curve, resume_state, run_logger

    model = build_model(config, device, checkpoint, first_index=distributed.rank() * config["batch"])
    done = 0
    if checkpoint is not None:
        done = resume_state(model, checkpoint)
        if main_rank:
            truncate_csv(out / "learning_curve.csv", "episode", done)
            truncate_csv(out / "progress.csv", "episode", done)
    model.set_logger(run_logger(out, resume=checkpoint is not None))
    if main_rank:
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    validation = config["validation"]
    crops = (ValidationCrops.of(validation["data"], validation["crops"], validation["size"], fit=validation.get("fit", False))
             if validation["every"] and main_rank else None)
    steps, batch, episodes = config["env"]["max_steps"], config["batch"], config["episodes"]
    monitor = TrainingMonitor(out, batch, config["checkpoint_every"], validation["every"] if main_rank else 0, crops,
                              steps, start_episode=done)
    ranks = distributed.world_size()
    if main_rank:
        print(f"training {config['algo']} on {device}{f' x {ranks} ranks' if ranks > 1 else ''}: episodes {done} -> "
              f"{episodes}, batch {batch}{f' per rank ({ranks * batch} in all)' if ranks > 1 else ''}, "
              f"{config['env']['crop_size']}x{config['env']['crop_size']}, {steps} steps; output in {out}/")
    if episodes > done:
        try:
            model.learn(total_timesteps=(episodes - done) * batch * steps, callback=monitor, log_interval=None,
                        reset_num_timesteps=False, progress_bar=main_rank and not args.no_progress)
        except KeyboardInterrupt:
            if main_rank:
                print(f"\ninterrupted after {monitor.episode} batches; continue with --resume {out}")
            return 130
    if main_rank:
        save_model(model, out / "model.zip")
        save_weights(model.policy, out / "policy.pt")
        plot_learning_curve(out / "learning_curve.csv", out / "learning_curve.png")
        print(monitor.summary())
        print(f"saved {out / 'model.zip'}, {out / 'policy.pt'}, {out / 'learning_curve.png'}")
    distributed.barrier()
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

