"""Data-parallel training over torch.distributed (gloo, two CPU processes): the same weights as one process
with the whole batch, and the command under torchrun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agents import PixelA2C, PixelPPO, load_policy

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(crop_size=32, max_steps=2, reward_mode="head-delta", smoothness_weight=0.0)
RECIPE = dict(n_steps=2, final_credit=True, learning_rate=3e-3, normalize_advantage=True, max_grad_norm=1.0,
              reward_scale=0.2, alpha_smoothness_coef=5.0, seed=0,
              policy_kwargs=dict(width=8, per_head=True, global_color=True, init_alpha=0.3, init_alpha_spread=0.5))
UPDATES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(algo: str, batch: int, first_index: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    from rellie_env.vector import LowLightSB3VecEnv

    torch.set_num_threads(1)
    cls = {"a2c": PixelA2C, "ppo": PixelPPO}[algo]
    extra = dict(batch_size=batch * 2, n_epochs=2) if algo == "ppo" else {}
    model = cls(env=LowLightSB3VecEnv(batch, first_index=first_index, **ENV), **{**RECIPE, "seed": seed}, **extra)
    model.learn(UPDATES * batch * 2)
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def rank_main(rank: int, world: int, port: int, algo: str, batch: int, out: str, average: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    if not average:
        import agents.distributed

        agents.distributed.average_gradients = lambda parameters: None
    weights = train(algo, batch, first_index=rank * batch)  # rank r's images are the whole batch's r-th part
    torch.save(weights, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def two_ranks(tmp_path: Path, algo: str, batch: int, average: bool = True) -> list[dict[str, torch.Tensor]]:
    mp.start_processes(rank_main, args=(2, free_port(), algo, batch, str(tmp_path), average), nprocs=2,
                       start_method="spawn")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path):
    one = train("a2c", batch=4)
    ranks = two_ranks(tmp_path, "a2c", batch=2)
    assert max_difference(ranks[0], ranks[1]) == 0.0  # every rank holds the same weights
    assert max_difference(ranks[0], one) < 1e-4
    assert max_difference(ranks[0], train("a2c", batch=4, seed=1)) > 1e-3  # another seed: other weights


def test_without_gradient_averaging_the_ranks_part(tmp_path):
    ranks = two_ranks(tmp_path, "a2c", batch=2, average=False)
    assert max_difference(ranks[0], ranks[1]) > 1e-4
    assert max_difference(ranks[0], train("a2c", batch=4)) > 1e-4


def test_ppo_ranks_stay_in_step(tmp_path):
    ranks = two_ranks(tmp_path, "ppo", batch=2)
    assert max_difference(ranks[0], ranks[1]) == 0.0


def test_the_training_command_under_torchrun(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               str(ROOT / "train_sb3.py"), "--episodes", "2", "--batch", "2", "--crop", "32", "--steps", "2",
               "--width", "8", "--eval-every", "1", "--checkpoint-every", "1", "--threads", "1", "--no-progress",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 ranks" in result.stdout and "4 in all" in result.stdout
    assert result.stdout.count("saved ") == 1  # rank 0 alone reported and saved
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "policy.pt" in files and "checkpoints/latest.state.pt" in files
    assert not [f for f in files if "rank1" in f]
    state = torch.load(out / "checkpoints" / "latest.state.pt", weights_only=False)
    assert len(state["ranks"]) == 2  # each rank's data stream, for --resume
    assert json.loads((out / "config.json").read_text())["batch"] == 2
    load_policy(out / "policy.pt")
    photo = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(photo), np.full((40, 40, 3), 30, np.uint8))
    evaluate = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--input", str(photo), "--model",
                               str(out / "policy.pt"), "--steps", "1", "--out", str(tmp_path / "eval")],
                              capture_output=True, text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-2000:]
    resume = [*command[:command.index(str(ROOT / "train_sb3.py")) + 1], "--resume", str(out), "--episodes", "3",
              "--threads", "1", "--no-progress"]
    more = subprocess.run(resume, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert more.returncode == 0, more.stderr[-3000:]
    rows = (out / "learning_curve.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
