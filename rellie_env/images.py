"""Image sources for the environment: built-in photos, folders and arrays; conversion and augmentation.

Everything here runs once per episode start (never inside a step) and works in numpy/OpenCV.
Images are float32 ``H x W x 3`` RGB arrays in [0, 1].
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Colour photos shipped inside scikit-image's wheel (CC0 / public domain, see skimage/data/README.txt).
# The held-aside ("test") photos are never seen in training; the evaluation and learning tests use them.
BUILTIN_TRAIN = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "immunohistochemistry", "retina")
BUILTIN_TEST = ("chelsea", "coffee")
# A photo's degradation draws are seeded by its place here; photos added later go at the end, so that the
# others (the evaluation set above all) keep their low-light versions.
_SEED_ORDER = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "immunohistochemistry", "chelsea",
               "coffee", "retina")
_BUILTIN_FILES = {"immunohistochemistry": "ihc.png"}


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Convert an image array to float32 RGB ``H x W x 3`` in [0, 1].

    Accepted: ``H x W`` or ``H x W x 1`` grayscale (replicated to 3 channels), ``H x W x 3`` RGB,
    ``H x W x 4`` RGBA (alpha dropped); uint8 (/255), uint16 (/65535), bool, or float already in [0, 1].
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"expected an H x W, H x W x 1, H x W x 3 or H x W x 4 image, got shape {a.shape}")
    a = a[:, :, :3] if a.shape[2] == 4 else a
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        out = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        out = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float32)
        if not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 1.0:
            raise ValueError("a float image must hold finite values in [0, 1]")
    else:
        raise ValueError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """Read an image file as float RGB (8/16-bit, grey, RGBA handled); ``None`` if it cannot be read."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.ndim == 3 and raw.shape[2] >= 3:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA if raw.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    try:
        return to_float_rgb(raw)
    except ValueError:
        return None


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); ValueError if it is missing or holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder {str(root)!r} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


@dataclass(frozen=True)
class Degradation:
    """How the built-in photos are made low-light: ``clip(gain * x**gamma + N(0, noise^2))``.

    Each photo draws its gamma and gain uniformly from the ranges, from a generator seeded with ``seed``,
    so the built-in low-light set is the same on every machine (evaluation uses it). With ``per_episode``
    (the default) an environment instead darkens each episode's crop of the clean photo afresh, with its
    own seeded generator: training then sees every photo at many exposures and noise draws, so the agent
    must read the exposure from the pixels rather than recognise six photos.

    ``color_cast`` (0 by default, so the evaluation set has no cast) multiplies each channel's gain by
    ``exp(u)``, ``u ~ U(-color_cast, color_cast)`` per channel: a training option that shows the agent colour
    casts its few photos lack, as low-light sensors and unseen scenes have them.
    """

    gamma: tuple[float, float] = (2.0, 2.8)
    gain: tuple[float, float] = (0.35, 0.6)
    noise: float = 0.01
    seed: int = 0
    per_episode: bool = True
    color_cast: float = 0.0

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gamma, gain = rng.uniform(*self.gamma), rng.uniform(*self.gain)
        if self.color_cast:
            gain = gain * np.exp(rng.uniform(-self.color_cast, self.color_cast, 3)).astype(np.float32)
        low = gain * np.power(image, gamma) + rng.normal(0.0, self.noise, image.shape)
        return np.clip(low, 0.0, 1.0).astype(np.float32)


def _builtin_photo(name: str) -> np.ndarray:
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return to_float_rgb(left if name == "motorcycle_left" else right)
    if name in _BUILTIN_FILES or not hasattr(skimage.data, name):
        return read_image(Path(skimage.data.data_dir) / _BUILTIN_FILES.get(name, f"{name}.png"))
    return to_float_rgb(getattr(skimage.data, name)())


@dataclass
class ImageSet:
    """Low-light images with their names and optional ground-truth targets (same size, or ``None``)."""

    names: list[str]
    images: list[np.ndarray]
    targets: list[np.ndarray | None]
    skipped: list[str] = field(default_factory=list)
    # When set, environments darken each episode's target crop afresh instead of using ``images``.
    degradation: Degradation | None = None

    def __len__(self) -> int:
        return len(self.images)


def builtin_images(split: str = "train", degradation: Degradation = Degradation()) -> ImageSet:
    """The built-in low-light set: scikit-image's colour photos, degraded; targets are the photos.

    :param split: ``"train"``, ``"test"`` (held aside from training) or ``"all"``.
    """
    names = {"train": BUILTIN_TRAIN, "test": BUILTIN_TEST, "all": BUILTIN_TRAIN + BUILTIN_TEST}.get(split)
    if names is None:
        raise ValueError(f"builtin split must be 'train', 'test' or 'all', got {split!r}")
    images, targets = [], []
    for name in names:
        # One generator per photo, seeded by its place in the full list: a photo degrades alike in every split.
        rng = np.random.default_rng([degradation.seed, _SEED_ORDER.index(name)])
        clean = _builtin_photo(name)
        images.append(degradation.apply(clean, rng))
        targets.append(clean)
    return ImageSet(list(names), images, targets, degradation=degradation if degradation.per_episode else None)


def load_images(
    data: str | os.PathLike | Sequence[np.ndarray] = "builtin",
    targets: str | os.PathLike | None = None,
    degradation: Degradation = Degradation(),
) -> ImageSet:
    """Load an image source.

    :param data: ``"builtin"`` (= ``"builtin:train"``), ``"builtin:test"``, ``"builtin:all"``, a folder
        (searched recursively; unreadable files are skipped with a warning and listed in ``skipped``),
        a single image file, or a list of arrays (any form :func:`to_float_rgb` accepts).
    :param targets: optional folder of ground-truth images paired with ``data`` by file stem.
    :param degradation: how built-in photos are darkened.
    """
    if isinstance(data, str) and data.startswith("builtin"):
        _, _, split = data.partition(":")
        return builtin_images(split or "train", degradation)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        files = [path] if path.is_file() else list_images(path)
        names, images, skipped = [], [], []
        for f in files:
            img = read_image(f)
            if img is None:
                skipped.append(str(f))
            else:
                names.append(f.stem)
                images.append(img)
        if skipped:
            warnings.warn(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}", stacklevel=2)
        if not images:
            raise ValueError(f"no readable image in {str(path)!r} (unreadable: {', '.join(skipped)})")
        result = ImageSet(names, images, [None] * len(images), skipped)
    else:
        images = [to_float_rgb(a) for a in data]
        if not images:
            raise ValueError("the list of images is empty")
        result = ImageSet([f"image{i}" for i in range(len(images))], images, [None] * len(images))
    if targets is not None:
        by_stem = {f.stem: f for f in list_images(targets)}
        for i, name in enumerate(result.names):
            if name in by_stem:
                target = read_image(by_stem[name])
                if target is not None and target.shape == result.images[i].shape:
                    result.targets[i] = target
                else:
                    warnings.warn(f"target for {name!r} unreadable or of another size; ignored", stacklevel=2)
    return result


@dataclass(frozen=True)
class Augmentation:
    """Random crops, flips and small rotations, as released (PixelRL's loader), and optional rescaling.

    :param crop_size: side of the square crop; ``None`` keeps the whole image. An image smaller than the
        crop is first resized (bilinear) so that its shorter side equals ``crop_size``.
    :param flip_prob: probability of a horizontal flip.
    :param rotate_prob: probability of a rotation by up to ``max_rotation`` degrees either way
        (border reflected, where the released code filled black).
    :param min_scale: below 1, the image is first shrunk (area interpolation) by a factor drawn
        log-uniformly from ``[min_scale, 1]``, so that the agent sees scenes at many scales, as it does
        photos of any resolution and fast enhancement's downscaled copy (1, the default, draws nothing).
    """

    crop_size: int | None = 70
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_rotation: float = 10.0
    min_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 16:
            raise ValueError(f"crop_size must be at least 16 (one exposure patch), got {self.crop_size}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must lie in (0, 1], got {self.min_scale}")

    def __call__(
        self, rng: np.random.Generator, image: np.ndarray, target: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment ``image`` (and ``target`` alike); the random draws are the same with or without target."""
        pair = [image] if target is None else [image, target]
        if self.min_scale < 1.0:
            scale = float(np.exp(rng.uniform(np.log(self.min_scale), 0.0)))
            h, w = image.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            pair = [cv2.resize(np.ascontiguousarray(p), size, interpolation=cv2.INTER_AREA) for p in pair]
        if rng.random() < self.flip_prob:
            pair = [p[:, ::-1] for p in pair]
        if rng.random() < self.rotate_prob:
            angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
            h, w = pair[0].shape[:2]  # after any rescaling above
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            pair = [cv2.warpAffine(np.ascontiguousarray(p), m, (w, h), borderMode=cv2.BORDER_REFLECT_101) for p in pair]
        if self.crop_size is not None:
            c = self.crop_size
            h, w = pair[0].shape[:2]
            if min(h, w) < c:
                scale = c / min(h, w)
                size = (max(c, round(w * scale)), max(c, round(h * scale)))
                pair = [cv2.resize(np.ascontiguousarray(p), size, interpolation=cv2.INTER_LINEAR) for p in pair]
                h, w = pair[0].shape[:2]
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            pair = [p[y : y + c, x : x + c] for p in pair]
        pair = [np.ascontiguousarray(p, dtype=np.float32) for p in pair]
        return pair[0], (pair[1] if target is not None else None)
