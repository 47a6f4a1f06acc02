"""train_sb3.py end to end on tiny settings: outputs, resume, and clear errors."""
import json

import pytest

import train_sb3

TINY = ["--batch", "2", "--crop", "32", "--steps", "2", "--width", "8", "--no-progress", "--eval-every", "1",
        "--checkpoint-every", "1", "--threads", "1"]


@pytest.mark.parametrize("algo", ["pixel-a2c", "pixel-ppo", "a2c"])
def test_train_writes_model_logs_and_curve(tmp_path, algo):
    out = tmp_path / algo
    assert train_sb3.main(["--algo", algo, "--episodes", "2", "--out", str(out), *TINY]) == 0
    for name in ("model.zip", "policy.pt", "learning_curve.csv", "learning_curve.png", "progress.csv",
                 "config.json", "checkpoints/latest.zip"):
        assert (out / name).is_file(), name
    rows = (out / "learning_curve.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("episode,reward")
    assert list((out / "tensorboard").glob("*")) or list(out.glob("events.out.tfevents*"))
    assert json.loads((out / "config.json").read_text())["algo"] == algo


def test_resume_continues_the_episode_count(tmp_path):
    out = tmp_path / "run"
    assert train_sb3.main(["--episodes", "1", "--out", str(out), *TINY]) == 0
    assert train_sb3.main(["--episodes", "2", "--out", str(out), "--resume", str(out / "model.zip"), *TINY]) == 0
    rows = (out / "learning_curve.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_bad_input_gives_a_clear_message_and_non_zero_exit(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_sb3.main(["--algo", "dqn"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK not really")
    assert train_sb3.main(["--resume", str(bad), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "broken.zip" in capsys.readouterr().err


def test_absent_device_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        train_sb3.main(["--device", "cuda", *TINY])


def test_start_at_the_best_constant_policy(tmp_path, capsys):
    out = tmp_path / "const"
    assert train_sb3.main(["--episodes", "1", "--init-alpha", "best-constant", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    alphas = json.loads(printed.split("alpha = ")[1].splitlines()[0])
    assert len(alphas) == 3 and all(-0.3 <= a <= 1.0 for a in alphas)


def test_final_credit_flag(tmp_path):
    out = tmp_path / "final"
    assert train_sb3.main(["--episodes", "1", "--final-credit", "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["final_credit"] and config["gamma"] == 0.0
    with pytest.raises(SystemExit):  # argparse's error, exit status 2
        train_sb3.main(["--algo", "a2c", "--final-credit", "--out", str(tmp_path / "stock"), *TINY])
    out = tmp_path / "plain"
    assert train_sb3.main(["--episodes", "1", "--no-final-credit", "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert not config["final_credit"] and config["gamma"] == 1.0


def test_adaptive_preset_trains_the_adaptive_policy(tmp_path):
    out = tmp_path / "adaptive"
    assert train_sb3.main(["--preset", "adaptive", "--episodes", "1", "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["min_scale"], config["init_alpha_spread"], config["alpha_smoothness_coef"]) == (0.2, 0.5, 5.0)
    from agents import load_policy

    policy = load_policy(out / "policy.pt")
    assert policy.global_color and policy.global_exposure
    assert load_policy(out / "model.zip").per_head  # head-delta: a value map per head
