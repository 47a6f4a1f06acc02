"""rellie-train end to end on tiny settings: outputs, configs, exact resume, and clear errors."""
import csv
import json
import os

import pytest
import torch

from agents.cli import train

TINY = ["--batch", "2", "--crop", "32", "--steps", "2", "--width", "8", "--no-progress", "--eval-every", "1",
        "--checkpoint-every", "1", "--threads", "1"]


def curve(out):
    with open(out / "learning_curve.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["pixel-a2c", "pixel-ppo", "a2c"])
def test_train_writes_model_logs_and_curve(tmp_path, algo):
    out = tmp_path / algo
    assert train.main(["--algo", algo, "--episodes", "2", "--out", str(out), *TINY]) == 0
    for name in ("model.zip", "policy.pt", "learning_curve.csv", "learning_curve.png", "progress.csv",
                 "config.json", "checkpoints/latest.zip", "checkpoints/latest.state.pt"):
        assert (out / name).is_file(), name
    rows = curve(out)
    assert [r["episode"] for r in rows] == ["1", "2"] and all(r["val_psnr"] for r in rows)
    assert list((out / "tensorboard").glob("events.out.tfevents*"))
    assert json.loads((out / "config.json").read_text())["algo"] == algo


def test_a_runs_config_reproduces_it(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(["--episodes", "2", "--seed", "3", "--out", str(first), *TINY]) == 0
    assert train.main(["--config", str(first / "config.json"), "--out", str(second), "--no-progress"]) == 0
    assert json.loads((second / "config.json").read_text()) == json.loads((first / "config.json").read_text())
    a, b = (torch.load(out / "policy.pt", weights_only=True)["state_dict"] for out in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    """N batches straight, and the same run interrupted in its 3rd batch then resumed: the same curve and weights
    (the checkpoint holds the data stream and torch's random state; the interrupted batch is done again)."""
    args = ["--episodes", "4", "--lr-schedule", "linear", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main([*args, "--out", str(straight)]) == 0

    from agents.training import TrainingMonitor

    original = TrainingMonitor._on_step
    calls = []

    def interrupt(self):
        calls.append(1)
        if len(calls) == 5:  # in the 3rd batch (2 steps each)
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TrainingMonitor, "_on_step", interrupt)
    assert train.main([*args, "--out", str(split)]) == 130
    monkeypatch.setattr(TrainingMonitor, "_on_step", original)
    assert [r["episode"] for r in curve(split)] == ["1", "2"]
    assert train.main(["--resume", str(split), "--no-progress", "--threads", "1"]) == 0
    assert curve(split) == curve(straight)
    a, b = (torch.load(out / "policy.pt", weights_only=True)["state_dict"] for out in (straight, split))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(split / "progress.csv") as f:
        assert [r["episode"] for r in csv.DictReader(f)] == ["1", "2", "3", "4"]  # logs appended, not wiped


def test_resume_keeps_the_runs_settings_and_takes_more_episodes(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--episodes", "1", "--out", str(out), *TINY]) == 0
    assert train.main(["--resume", str(out), "--episodes", "2", "--no-progress"]) == 0  # no need to repeat --crop
    assert [r["episode"] for r in curve(out)] == ["1", "2"]
    assert train.main(["--resume", str(out), "--crop", "48", "--episodes", "3"]) == 2
    assert "--crop 48 conflicts with the run's own setting (32)" in capsys.readouterr().err


def test_an_existing_output_folder_is_refused_unless_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--episodes", "1", "--out", str(out), *TINY]) == 0
    assert train.main(["--episodes", "1", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    (out / "stale.txt").write_text("from the old run")
    assert train.main(["--episodes", "1", "--out", str(out), "--overwrite", *TINY]) == 0
    assert not (out / "stale.txt").exists()


@pytest.mark.parametrize("argv, message", [
    (["--episodes", "0"], "episodes must be a positive integer"),
    (["--episodes", "-1"], "episodes must be a positive integer"),
    (["--exposure", "5"], "exposure_level"),
    (["--spatial-weight", "nan"], "spatial"),
    (["--color-weight", "-1"], "color"),
    (["--algo", "a2c", "--final-credit"], "--final-credit needs a pixel-wise algorithm"),
    (["--n-epochs", "3"], "PPO setting"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert train.main([*TINY, *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_bad_resume_sources_are_clear_errors(tmp_path, capsys):
    weights = tmp_path / "policy.pt"
    weights.write_bytes(b"weights")
    assert train.main(["--resume", str(weights)]) == 2
    assert "weights only" in capsys.readouterr().err
    run = tmp_path / "run"
    assert train.main(["--episodes", "1", "--out", str(run), *TINY]) == 0
    (run / "checkpoints" / "latest.zip").write_bytes(b"PK not really")
    assert train.main(["--resume", str(run), "--episodes", "2"]) == 2
    assert "latest.zip" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_is_a_clear_error(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    assert train.main(["--episodes", "1", "--out", str(locked / "run"), *TINY]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_absent_device_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert train.main(["--device", "cuda", *TINY]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_final_credit_setting(tmp_path):
    out = tmp_path / "plain"
    assert train.main(["--episodes", "1", "--no-final-credit", "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert not config["algorithm"]["final_credit"]
    from agents import load_policy

    assert load_policy(out / "model.zip").per_head  # head-delta: a value map per head
