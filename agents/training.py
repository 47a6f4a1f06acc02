"""Training bookkeeping for train_sb3.py: per-episode records, held-out evaluation, checkpoints, plots."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.checkpoints import save_model
from agents.enhance import best_constant_policy, heldout_crops, policy_loss_on

CURVE_FIELDS = ("episode", "reward", "image_loss", "loss/spatial", "loss/exposure", "loss/color",
                "loss/smoothness", "psnr", "heldout_loss")


class TrainingMonitor(BaseCallback):
    """After each batch of episodes: record its return and final loss terms, evaluate the greedy policy on
    held-aside built-in crops every ``eval_every`` episodes, checkpoint every ``checkpoint_every``.

    :param out: output folder (``learning_curve.csv``, ``checkpoints/``).
    :param batch: images per batch (to count episodes).
    :param checkpoint_every: episodes between checkpoints (``checkpoints/latest.zip``, written atomically).
    :param eval_every: episodes between held-out evaluations (0: never).
    :param start_episode: episodes already done (when resuming).
    """

    def __init__(self, out: Path, batch: int, checkpoint_every: int, eval_every: int, start_episode: int = 0):
        super().__init__()
        self.out, self.batch = Path(out), batch
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        self.episode = start_episode
        self.rows: list[dict] = []
        self.heldout = heldout_crops(16, 96) if eval_every else None
        self.curve = self.out / "learning_curve.csv"
        if start_episode == 0 or not self.curve.exists():
            with open(self.curve, "w", newline="") as f:
                csv.writer(f).writerow(CURVE_FIELDS)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        infos = [i for i in self.locals.get("infos", []) if "episode" in i]
        if not infos:
            return
        self.episode += 1
        row = {"episode": self.episode, "reward": float(np.mean([i["episode"]["r"] for i in infos]))}
        for key in CURVE_FIELDS[2:-1]:
            values = [i[key] for i in infos if key in i]
            row[key] = float(np.mean(values)) if values else float("nan")
        row["heldout_loss"] = float("nan")
        if self.eval_every and (self.episode % self.eval_every == 0 or self.episode == 1):
            heldout = self.heldout.to(self.model.device)
            row["heldout_loss"] = policy_loss_on(self.model.policy, heldout)  # in the policy's own action set
            self.logger.record("eval/heldout_loss", row["heldout_loss"])
        self.logger.record("rollout/episode_reward", row["reward"])
        for key in CURVE_FIELDS[2:-1]:
            self.logger.record(f"rollout/final_{key.replace('loss/', 'loss_')}", row[key])
        self.rows.append(row)
        with open(self.curve, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in CURVE_FIELDS])
        if self.checkpoint_every and self.episode % self.checkpoint_every == 0:
            save_model(self.model, self.out / "checkpoints" / "latest.zip")
        self.logger.dump(self.num_timesteps)

    def summary(self) -> str:
        evals = [r for r in self.rows if not np.isnan(r["heldout_loss"])]
        if not evals:
            return f"{self.episode} episodes"
        return (f"{self.episode} episodes; held-out non-reference loss of the greedy policy "
                f"{evals[0]['heldout_loss']:.3f} (episode {evals[0]['episode']}) -> {evals[-1]['heldout_loss']:.3f}")


def plot_learning_curve(csv_path: Path, png_path: Path) -> None:
    """Episode reward, each final loss term and the held-out loss against episodes."""
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
    for ax, key in zip(axes.flat, ("reward", "heldout_loss", "loss/exposure", "loss/spatial", "loss/color",
                                   "loss/smoothness")):
        ok = ~np.isnan(col[key])
        ax.plot(ep[ok], col[key][ok], "o-" if key == "heldout_loss" else "-", ms=3)
        ax.set_title({"reward": "episode return (training)", "heldout_loss": "held-out loss, greedy (lower is better)"}
                     .get(key, f"final {key} (training)"))
        ax.set_xlabel("episode (batch)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def best_constant_alphas(env_kwargs: dict, steps: int, seed: int, n: int = 16, size: int = 64) -> list[float]:
    """Curve strengths of the best constant action triple on ``n`` training crops: a starting policy that
    is already as good as any spatially constant one, which RL then makes spatially adaptive."""
    from rellie_env.config import EnvConfig, sample_start

    config = EnvConfig(**{**env_kwargs, "crop_size": size, "flip_prob": 0.0, "rotate_prob": 0.0})
    source, rng = config.load_source(), np.random.default_rng(seed)
    crops = np.stack([sample_start(rng, source, config.augmentation)[0] for _ in range(n)])
    triple, _ = best_constant_policy(torch.from_numpy(crops.transpose(0, 3, 1, 2)), steps, config.action_set,
                                     config.weights)
    return [round(float(config.action_set.alpha_values()[a]), 4) for a in triple]
