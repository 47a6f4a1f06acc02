"""evaluate.py: outputs, partial ground truth, unreadable files and the errors for bad input."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from agents.checkpoints import save_weights
from agents.cli import evaluate

from .conftest import dark_photo, reference_file, small_policy


def write_rgb(path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_weights(small_policy(init_alpha=0.3), tmp_path_factory.mktemp("model") / "small.pt")


@pytest.fixture()
def folders(tmp_path):
    """``low/``: a.png, b.png and an unreadable c.png; ``high/``: the ground truth of a only."""
    a, b = dark_photo(40, 56), dark_photo(48, 48)
    write_rgb(tmp_path / "low" / "a.png", a)
    write_rgb(tmp_path / "low" / "b.png", b)
    (tmp_path / "low" / "c.png").write_text("not an image")
    write_rgb(tmp_path / "high" / "a.png", np.clip(a * 3, 0, 1))
    return tmp_path


def test_outputs_partial_ground_truth_and_skipped_files(folders, model, capsys):
    out = folders / "out"
    code = evaluate.main(["--input", str(folders / "low"), "--gt", str(folders / "high"), "--out", str(out),
                          "--model", str(model), "--steps", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "c.png" in captured.err and "unreadable" in captured.err
    methods = ["identity", "gamma", "he", "clahe", "ours"]
    for method in methods:
        for name in ("a", "b"):
            assert cv2.imread(str(out / method / f"{name}.png")) is not None
    for name in ("results.md", "results.csv", "results.json", "grid.png", "steps_a.png", "steps_b.png"):
        assert (out / name).is_file(), name
    grid = cv2.imread(str(out / "grid.png"))
    assert grid.shape[1] == evaluate.CELL[0] * 5  # input | gamma | he | clahe | ours
    data = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in data["results"]] == methods * 2
    assert data["skipped"] == [str(folders / "low" / "c.png")] and data["no_ground_truth"] == ["b"]
    for row in data["results"]:
        assert (row["psnr"] is not None) == (row["image"] == "a") and (row["ssim"] is None) == (row["image"] == "b")
        assert row["score"] >= 0 and row["seconds"] >= 0 and 0 <= row["brightness"] <= 1
    means = {m["method"]: m for m in data["means"]}
    assert means["ours"]["n_gt"] == 1 and means["ours"]["psnr"] == data["results"][4]["psnr"]
    assert means["ours"]["brightness"] > means["identity"]["brightness"]  # it brightens
    assert means["identity"]["spatial"] == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 + 5 and rows[5]["psnr"] == ""  # b's rows: no PSNR
    table = (out / "results.md").read_text()
    assert table in captured.out and "| b | ours |  |  |" in table and "sigma 1.5" in table and "c.png" in table


def test_reference_baselines_run(tmp_path):
    write_rgb(tmp_path / "in" / "x.png", dark_photo(32, 40))
    code = evaluate.main(["--input", str(tmp_path / "in" / "x.png"), "--out", str(tmp_path / "out"),
                          "--methods", "zero-dce,rellie-official", "--steps", "1", "--denoise", "ffdnet",
                          "--zero-dce-weights", str(reference_file("zero_dce_epoch99.pth")),
                          "--rellie-weights", str(reference_file("rellie_official_model.npz")),
                          "--ffdnet-weights", str(reference_file("ffdnet_net_rgb.pth"))])
    assert code == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["method"] for r in data["results"]] == ["zero-dce", "rellie-official"]
    assert all(r["brightness"] > 0.1 for r in data["results"])


def error_of(argv, capsys) -> str:
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    return err


def test_no_images_is_a_clear_error(tmp_path, model, capsys):
    (tmp_path / "empty").mkdir()
    out = ["--out", str(tmp_path / "out"), "--model", str(model)]
    assert "holds no image files" in error_of(["--input", str(tmp_path / "empty"), *out], capsys)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.jpg").write_text("not an image")
    assert "no readable image" in error_of(["--input", str(tmp_path / "junk"), *out], capsys)
    assert "does not exist" in error_of(["--input", str(tmp_path / "nowhere"), *out], capsys)


def test_bad_weights_and_options_are_clear_errors(folders, model, capsys, monkeypatch):
    args = ["--input", str(folders / "low" / "a.png"), "--out", str(folders / "out")]
    junk = folders / "junk.pt"
    junk.write_text("not weights")
    assert "junk.pt" in error_of([*args, "--model", str(junk)], capsys)
    assert "junk.pt" in error_of([*args, "--methods", "zero-dce", "--zero-dce-weights", str(junk)], capsys)
    assert "junk.pt" in error_of([*args, "--methods", "rellie-official", "--rellie-weights", str(junk)], capsys)
    assert "missing.npz" in error_of([*args, "--model", str(folders / "missing.npz")], capsys)
    assert "--zero-dce-weights" in error_of([*args, "--methods", "zero-dce"], capsys)
    assert "unknown method" in error_of([*args, "--methods", "gamma,magic"], capsys)
    assert "--ffdnet-weights" in error_of([*args, "--model", str(model), "--denoise", "ffdnet"], capsys)
    monkeypatch.setattr(evaluate, "DEFAULT_MODEL", folders / "missing_default.pt")
    assert "--model" in error_of([*args, "--methods", "ours"], capsys)
    assert not (folders / "out").exists()  # no output folder for a run that failed its checks
    assert evaluate.main([*args, "--methods", "identity"]) == 0
    assert evaluate.main([*args, "--overwrite"]) == 0  # no model: 'ours' is left out, with a note
    assert "--model" in capsys.readouterr().err
    assert not (folders / "out" / "ours").exists()


def test_an_existing_results_folder_is_refused_unless_overwritten(folders, model, capsys):
    args = ["--input", str(folders / "low" / "a.png"), "--model", str(model), "--steps", "1"]
    out = folders / "res"
    assert evaluate.main([*args, "--out", str(out)]) == 0
    (out / "stale.png").write_bytes(b"from the old run")
    assert "already holds results" in error_of([*args, "--out", str(out)], capsys)
    assert evaluate.main([*args, "--out", str(out), "--overwrite", "--methods", "gamma"]) == 0
    assert not (out / "stale.png").exists() and not (out / "ours").exists()


def test_images_too_small_to_score_are_skipped_with_a_note(tmp_path, model, capsys):
    for name, (h, w) in {"tiny": (1, 1), "thin": (3, 5), "long": (10000, 8), "ok": (20, 24)}.items():
        write_rgb(tmp_path / "in" / f"{name}.png", dark_photo(h, w))
    out = tmp_path / "out"
    assert evaluate.main(["--input", str(tmp_path / "in"), "--model", str(model), "--out", str(out), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "under 16x16" in err and "tiny (1x1)" in err and "long (10000x8)" in err
    assert [r["image"] for r in json.loads((out / "results.json").read_text())["results"]][:1] == ["ok"]
    assert "16x16" in error_of(["--input", str(tmp_path / "in" / "thin.png"), "--model", str(model),
                                "--out", str(tmp_path / "o2")], capsys)


def test_a_tile_under_twice_the_halo_is_refused(folders, model, capsys):
    args = ["--input", str(folders / "low" / "a.png"), "--model", str(model), "--out", str(folders / "t")]
    assert "tile must be an integer of at least" in error_of([*args, "--tile", "1"], capsys)
    assert "exposure_level" in error_of([*args, "--exposure", "7"], capsys)
