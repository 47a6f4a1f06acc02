"""Training bookkeeping for ``rellie-train``: per-batch records, validation fidelity, exact checkpoints, plots."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

from agents import distributed
from agents.checkpoints import atomic_write, save_model, save_weights
from agents.evaluation import ValidationCrops
from rellie_env.losses import LOSS_TERMS

TRAINING_FIELDS = ("reward", "image_loss", *(f"loss/{term}" for term in LOSS_TERMS))
VALIDATION_FIELDS = ("val_psnr", "val_ssim")
CURVE_FIELDS = ("episode", *TRAINING_FIELDS, *VALIDATION_FIELDS)


class TrainingMonitor(BaseCallback):
    """Bookkeeping after each batch of episodes, once its update is done: its return and final loss terms,
    the greedy policy's fidelity (PSNR, SSIM) on fixed validation crops every ``eval_every`` batches, one row
    of ``learning_curve.csv`` and of the logger, and every ``checkpoint_every`` batches (and at the end) a
    checkpoint from which ``rellie-train --resume`` continues exactly. The policy of the best validation PSNR
    so far is kept as ``best_policy.pt`` (validate on photos held aside from training, not on a test set).

    :param out: output folder (``learning_curve.csv``, ``checkpoints/``).
    :param batch: images per batch (to count episodes).
    :param checkpoint_every: batches between checkpoints (``checkpoints/latest.zip`` and its ``.state.pt``).
    :param eval_every: batches between validations (0: never).
    :param validation: the crops to validate on (needed when ``eval_every``).
    :param steps: greedy steps of the validation rollouts.
    :param start_episode: batches already done (when resuming).

    In a distributed run every rank keeps its own part of the checkpoint (its episodes and random streams);
    rank 0 alone validates and writes the logs, the model and the best policy.
    """

    def __init__(self, out: Path, batch: int, checkpoint_every: int, eval_every: int,
                 validation: ValidationCrops | None = None, steps: int = 6, start_episode: int = 0):
        super().__init__()
        if eval_every and validation is None:
            raise ValueError("eval_every needs validation crops")
        self.out, self.batch = Path(out), batch
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        self.validation, self.steps = validation, steps
        self.episode = start_episode
        self.rows: list[dict] = []
        self.pending: dict | None = None
        self.best: tuple[float, int] | None = None  # (validation PSNR, episode)
        self.main = distributed.is_main()
        self.curve = self.out / "learning_curve.csv"
        if self.main and not self.curve.exists():
            with open(self.curve, "w", newline="") as f:
                csv.writer(f).writerow(CURVE_FIELDS)
        elif self.main:  # resuming: the best so far is the run's
            with open(self.curve, newline="") as f:
                scores = [(float(r["val_psnr"]), int(r["episode"])) for r in csv.DictReader(f) if r["val_psnr"] != "nan"]
            self.best = max(scores) if scores else None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        infos = [i for i in self.locals.get("infos", []) if "episode" in i]
        if not infos:
            return
        self.episode += 1
        row = {"episode": self.episode, "reward": float(np.mean([i["episode"]["r"] for i in infos]))}
        for key in TRAINING_FIELDS[1:]:
            values = [i[key] for i in infos if key in i]
            row[key] = float(np.mean(values)) if values else float("nan")
        self.pending = row

    def _on_rollout_start(self) -> None:
        self._finish_batch()  # the previous batch's update is done

    def _on_training_end(self) -> None:
        self._finish_batch()
        save_checkpoint(self.model, self.out / "checkpoints" / "latest.zip", self.episode)

    def _finish_batch(self) -> None:
        if self.pending is None:
            return
        row, self.pending = self.pending, None
        row["val_psnr"] = row["val_ssim"] = float("nan")
        if self.main and self.eval_every and (self.episode % self.eval_every == 0 or self.episode == 1):
            row["val_psnr"], row["val_ssim"] = self.validation.score(self.model.policy, self.steps)
            self.logger.record("eval/psnr", row["val_psnr"])
            self.logger.record("eval/ssim", row["val_ssim"])
            if self.best is None or row["val_psnr"] > self.best[0]:
                self.best = (row["val_psnr"], self.episode)
                save_weights(self.model.policy, self.out / "best_policy.pt")
        self.logger.record("episode", self.episode)
        self.logger.record("rollout/episode_reward", row["reward"])
        for key in TRAINING_FIELDS[1:]:
            self.logger.record(f"rollout/final_{key.replace('loss/', 'loss_')}", row[key])
        self.rows.append(row)
        if self.main:
            with open(self.curve, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in CURVE_FIELDS])
        self.logger.dump(self.num_timesteps)
        if self.checkpoint_every and self.episode % self.checkpoint_every == 0:
            save_checkpoint(self.model, self.out / "checkpoints" / "latest.zip", self.episode)

    def summary(self) -> str:
        evals = [r for r in self.rows if not np.isnan(r["val_psnr"])]
        if not evals:
            return f"{self.episode} episodes"
        first, last = evals[0], evals[-1]
        best = max(evals, key=lambda r: r["val_psnr"])
        return (f"{self.episode} episodes; validation PSNR / SSIM of the greedy policy {first['val_psnr']:.2f} dB / "
                f"{first['val_ssim']:.4f} (episode {first['episode']}) -> {last['val_psnr']:.2f} dB / {last['val_ssim']:.4f}; "
                f"best {best['val_psnr']:.2f} dB / {best['val_ssim']:.4f} at episode {best['episode']} (best_policy.pt)")


def save_checkpoint(model: BaseAlgorithm, path: Path, episode: int) -> None:
    """The model (``path``, SB3's zip: weights, optimiser, counters) and what SB3 does not keep
    (:func:`state_path`): the batch count, and of every rank torch's random state, the action sampler's and the
    env's (its episodes in progress and the random streams of its data), so that a resumed run repeats exactly
    what an uninterrupted one does. Rank 0 writes both files."""
    state = {"episode": episode, "num_timesteps": model.num_timesteps, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "action_generators": [g.get_state() for g in getattr(model, "action_generators", [])],
             "env": model.get_env().state_dict() if hasattr(model.get_env(), "state_dict") else None}
    ranks = distributed.gather(state)
    if distributed.is_main():
        atomic_write(state_path(path), lambda tmp: torch.save({"ranks": ranks}, tmp))
        save_model(model, path)


def state_path(checkpoint: Path) -> Path:
    """``latest.state.pt`` beside ``latest.zip``."""
    return Path(checkpoint).with_suffix(".state.pt")


def resume_state(model: BaseAlgorithm, checkpoint: Path) -> int:
    """Put back what :func:`save_checkpoint` kept beside ``checkpoint``; returns the batches done.

    Without that file (a checkpoint from elsewhere) the run continues from the weights and counters alone:
    its data stream then starts afresh.
    """
    path = state_path(checkpoint)
    if not path.is_file():
        return int(model.num_timesteps // (model.n_envs * model.n_steps))
    ranks = torch.load(path, map_location="cpu", weights_only=False)["ranks"]
    if len(ranks) != distributed.world_size():
        raise ValueError(f"{str(path)!r} was written by a run of {len(ranks)} rank(s); resume it with as many")
    state = ranks[distributed.rank()]
    if state["num_timesteps"] != model.num_timesteps:
        raise ValueError(f"{str(path)!r} does not belong to {str(checkpoint)!r} (another batch count)")
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    for generator, generator_state in zip(getattr(model, "action_generators", []), state["action_generators"]):
        generator.set_state(generator_state)
    env = model.get_env()
    if state["env"] is not None and hasattr(env, "load_state_dict"):
        env.load_state_dict(state["env"])
        model._last_obs = env.current_observations()  # episodes go on from here: no new reset
        model._last_episode_starts = np.ones(env.num_envs, dtype=bool)
    return int(state["episode"])


class ResumableCSV(CSVOutputFormat):
    """SB3's CSV log, continuing an existing file (SB3's own truncates it)."""

    def __init__(self, filename: str | Path) -> None:
        path = Path(filename)
        if not path.is_file() or path.stat().st_size == 0:
            super().__init__(str(path))
            return
        self.file = open(path, "r+")
        self.keys = next(csv.reader([self.file.readline()]))
        self.file.seek(0, 2)
        self.separator, self.quotechar = ",", '"'


def run_logger(out: Path, resume: bool) -> Logger:
    """The run's logger: ``progress.csv`` (continued when resuming) and TensorBoard events in ``tensorboard/``;
    on ranks other than 0 of a distributed run, a logger that writes nothing."""
    if not distributed.is_main():
        return Logger(None, [])
    csv_format = ResumableCSV(out / "progress.csv") if resume else CSVOutputFormat(str(out / "progress.csv"))
    return Logger(str(out), [csv_format, TensorBoardOutputFormat(str(out / "tensorboard"))])


def plot_learning_curve(csv_path: Path, png_path: Path) -> None:
    """Episode reward, the validation PSNR and SSIM and each final loss term against episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    ep = np.array([float(r["episode"]) for r in rows])
    col = {k: np.array([float(r[k]) for r in rows]) for k in CURVE_FIELDS[1:]}
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    titles = {"reward": "episode return (training)", "val_psnr": "validation PSNR dB, greedy (higher is better)",
              "val_ssim": "validation SSIM, greedy (higher is better)"}
    for ax, key in zip(axes.flat, ("reward", "val_psnr", "val_ssim", "loss/exposure", "loss/color", "loss/spatial")):
        ok = ~np.isnan(col[key])
        ax.plot(ep[ok], col[key][ok], "o-" if key in VALIDATION_FIELDS else "-", ms=3)
        ax.set_title(titles.get(key, f"final {key} (training)"))
        ax.set_xlabel("episode (batch)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
