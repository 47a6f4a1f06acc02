"""The installed commands end to end (``rellie-enhance``, ``rellie-evaluate``, ``rellie-train``), and what
``rellie-enhance`` promises: results beside the photos or in one folder, inputs never overwritten, 16-bit and
JPEG kept, the EXIF orientation applied."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from agents.checkpoints import save_weights
from agents.cli import enhance

from .conftest import small_policy

BIN = Path(sys.executable).parent


def command(name: str) -> Path:
    path = BIN / name
    assert path.is_file(), f"{name} is not installed beside {sys.executable} (pip install -e .)"
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(small_policy(init_alpha=0.5), tmp_path_factory.mktemp("model") / "small.pt")


def dark(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 0.2 + 0.02).astype(np.float32)


def write(path: Path, image: np.ndarray, dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.round(image * np.iinfo(dtype).max).astype(dtype), cv2.COLOR_RGB2BGR))
    return path


def with_orientation(path: Path, orientation: int) -> Path:
    """Insert an EXIF block with this orientation tag after the JPEG's start marker."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01" + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4)
    app1 = b"\xff\xe1" + struct.pack(">H", 8 + len(tiff)) + b"Exif\x00\x00" + tiff
    data = path.read_bytes()
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


def test_results_go_beside_each_photo_and_keep_format_depth_and_orientation(tmp_path, model, capsys):
    jpeg = with_orientation(write(tmp_path / "a.jpg", dark(40, 60)), 6)  # shown rotated: 60 x 40
    deep = write(tmp_path / "sub" / "b.png", dark(32, 48, 1), np.uint16)
    before = {p: p.read_bytes() for p in (jpeg, deep)}
    assert enhance.main([str(jpeg), str(deep), "--model", str(model), "--denoise", "none", "--steps", "2"]) == 0
    out_a, out_b = tmp_path / "a_enhanced.jpg", tmp_path / "sub" / "b_enhanced.png"
    a = cv2.imread(str(out_a), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(out_b), cv2.IMREAD_UNCHANGED)
    assert a.shape == (60, 40, 3) and a.dtype == np.uint8
    assert b.shape == (32, 48, 3) and b.dtype == np.uint16 and b.mean() > dark().mean() * 65535
    assert {p: p.read_bytes() for p in before} == before  # inputs untouched
    printed = capsys.readouterr().out + capsys.readouterr().err
    assert str(out_a) in printed or "a_enhanced.jpg" in printed


def test_a_folder_into_one_output_folder_never_overwrites(tmp_path, model):
    photos = tmp_path / "photos"
    write(photos / "x.png", dark())
    write(photos / "deeper" / "x.png", dark(seed=2))  # the same name twice
    write(photos / "old_enhanced.png", dark(seed=3))  # an earlier result: left alone
    out = tmp_path / "fixed"
    assert enhance.main([str(photos), "-o", str(out), "--model", str(model), "--denoise", "none", "--steps", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_enhanced.png", "x_enhanced_2.png"]
    # an input whose name is another's result keeps its content
    clash = write(tmp_path / "c" / "y_enhanced.png", dark(seed=4))
    original = clash.read_bytes()
    write(tmp_path / "c" / "y.png", dark(seed=5))
    assert enhance.main([str(tmp_path / "c" / "y.png"), str(clash), "--model", str(model), "--denoise", "none"]) == 0
    assert clash.read_bytes() == original and (tmp_path / "c" / "y_enhanced_2.png").is_file()


def test_bad_inputs_are_clear_errors(tmp_path, model, capsys):
    assert enhance.main([str(tmp_path / "nowhere.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert enhance.main([str(tmp_path / "notes.txt")]) == 2
    assert "not an image file" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert enhance.main([str(broken), "--model", str(model), "--denoise", "none"]) == 2
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize("name, args", [
    ("rellie-enhance", ["--help"]),
    ("rellie-evaluate", ["--help"]),
    ("rellie-train", ["--help"]),
])
def test_installed_commands_start(name, args):
    result = subprocess.run([str(command(name)), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and name in result.stdout


def test_installed_enhance_command_end_to_end(tmp_path, model):
    photo = write(tmp_path / "night.png", dark())
    result = subprocess.run([str(command("rellie-enhance")), str(photo), "--model", str(model), "--denoise", "none",
                             "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "night_enhanced.png").is_file() and "night_enhanced.png" in result.stdout


def test_installed_train_and_evaluate_commands_end_to_end(tmp_path):
    run = tmp_path / "run"
    train = subprocess.run([str(command("rellie-train")), "--episodes", "1", "--batch", "2", "--crop", "32",
                            "--steps", "2", "--width", "8", "--eval-every", "0", "--no-progress", "--threads", "1",
                            "--out", str(run)], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    photo = write(tmp_path / "in" / "x.png", dark())
    evaluate = subprocess.run([str(command("rellie-evaluate")), "--input", str(photo), "--model", str(run / "policy.pt"),
                               "--steps", "1", "--out", str(tmp_path / "eval"), "--threads", "1"],
                              capture_output=True, text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr
    assert (tmp_path / "eval" / "results.md").is_file()
