"""Fix dark photos: enhance each photo (or every photo in a folder) with the shipped model.

Each result is written as ``<name>_enhanced.<ext>`` beside its photo, or into ``-o OUT``; an input is never
overwritten. 16-bit PNG and TIFF stay 16-bit, JPEGs stay JPEGs, and the EXIF orientation is applied. In a
folder, files named ``*_enhanced.*`` (earlier results) are left alone. Examples::

    rellie-enhance night.jpg
    rellie-enhance holiday/ -o holiday_fixed --steps 8
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from agents.checkpoints import DEFAULT_MODEL, EXPOSURE_MODEL, load_policy
from agents.inference import DENOISERS, enhance
from rellie_env.cpu import tune_cpu
from rellie_env.images import IMAGE_SUFFIXES, list_images, read_image

SUFFIX = "_enhanced"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rellie-enhance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_FOLDER", help="photos, or folders of photos (recursive)")
    p.add_argument("-o", "--out", help="folder for the results (default: beside each photo)")
    p.add_argument("--steps", type=int, default=6, help="enhancement steps: more is brighter (default 6)")
    p.add_argument("--exposure", type=float, help="target brightness E in [0.3, 0.75], higher is brighter; with it "
                   f"the shipped {EXPOSURE_MODEL.name} runs, trained to follow E (default: the default model's "
                   "own E, 0.344)")
    p.add_argument("--fast", action="store_true", help="decide on a small copy of each photo: much faster")
    p.add_argument("--denoise", choices=DENOISERS, default="guided",
                   help="guided: smooth the noise the brightening amplified (default); none: keep it")
    p.add_argument("--model", help=f"another model (.zip or .pt; default: the shipped {DEFAULT_MODEL.name})")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    return p.parse_args(argv)


def photos(inputs: list[str]) -> list[Path]:
    """The photos to enhance: files as given, folders' image files (without earlier results)."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [f for f in list_images(item) if not f.stem.endswith(SUFFIX)]
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(f"{str(item)!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
            found.append(item)
        else:
            raise ValueError(f"{str(item)!r} does not exist")
    return list(dict.fromkeys(p.resolve() for p in found))


def output_path(photo: Path, out: Path | None, taken: set[Path]) -> Path:
    """``<name>_enhanced<ext>`` in ``out`` or beside the photo; never an input, never another result's name."""
    folder = photo.parent if out is None else out
    stem, n = f"{photo.stem}{SUFFIX}", 1
    path = folder / f"{stem}{photo.suffix}"
    while path.resolve() in taken:
        n += 1
        path = folder / f"{stem}_{n}{photo.suffix}"
    taken.add(path.resolve())
    return path


def read_photo(path: Path) -> tuple[np.ndarray, np.dtype]:
    """The photo as float RGB (EXIF orientation applied) and the bit depth it was stored with."""
    image = read_image(path)
    if image is None:
        raise ValueError(f"{str(path)!r} could not be read as an image")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION).dtype
    return image, np.dtype(np.uint16 if depth == np.uint16 else np.uint8)


def write_photo(path: Path, image: np.ndarray, dtype: np.dtype) -> None:
    if path.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        dtype = np.dtype(np.uint8)  # 8-bit formats
    top = np.iinfo(dtype).max
    pixels = np.round(np.clip(image, 0, 1) * top).astype(dtype)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")


def run(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise ValueError(f"--steps must be non-negative, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu()
    todo = photos(args.inputs)
    if not todo:
        raise ValueError("no photos to enhance")
    out = None if args.out is None else Path(args.out)
    shipped = EXPOSURE_MODEL if args.exposure is not None else DEFAULT_MODEL
    policy = load_policy(args.model or shipped, args.device)
    policy.observe(torch.zeros(1, 3, 1, 1), args.exposure)  # a clear error before any photo
    taken = set(todo)
    for photo in tqdm(todo, unit="photo", disable=len(todo) < 2, file=sys.stderr):
        image, dtype = read_photo(photo)
        result = enhance(policy, image, steps=args.steps, fast=args.fast, denoise=args.denoise, exposure=args.exposure)
        target = output_path(photo, out, taken)
        write_photo(target, result, dtype)
        tqdm.write(f"{photo} -> {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
