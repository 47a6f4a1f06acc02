"""Image sources for the environment: built-in photos, folders and arrays, real or darkened; augmentation.

Everything here runs once per episode start (never inside a step) and works in numpy/OpenCV.
Images are float32 ``H x W x 3`` RGB arrays in [0, 1]. Sources are lazy: a folder's files are read when an
episode first needs them (and kept in a bounded cache), so a training set of thousands of photos costs no
start-up time and little memory.
"""
from __future__ import annotations

import os
import re
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

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
DARKEN_PREFIX = "dark:"


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


def to_nchw(image: np.ndarray) -> torch.Tensor:
    """An ``H x W x 3`` float32 image as a ``(1, 3, H, W)`` tensor that shares its memory (channels-last
    strides; a read-only array is copied first, since torch tensors are writable)."""
    if not image.flags.writeable:
        image = image.copy()
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)


def stack_nchw(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Images ``H x W x 3`` of one size as a new ``(N, 3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """The first image of a ``(B, 3, H, W)`` tensor (any device) as a new ``H x W x 3`` float32 array."""
    return np.array(images[0].detach().permute(1, 2, 0).to("cpu", torch.float32).numpy(), order="C")


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """Read an image file as float RGB (8 or 16 bits, grey or colour, alpha dropped, the EXIF orientation
    applied); ``None`` if it cannot be read."""
    raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if raw is None:
        return None
    try:
        return to_float_rgb(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))
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
    """How clean photos are made low-light: ``clip(gain * cast * x**gamma + noise)``.

    The defaults model real low light (the project's validation set uses them): gamma in [1.8, 2.8], gain in
    [0.2, 0.5], a mild per-channel cast ``exp(U(-0.1, 0.1))``, and Poisson-Gaussian sensor noise: shot noise
    of variance ``a * signal`` (``a`` drawn per image from ``shot_noise``) and Gaussian read noise of
    standard deviation ``read_noise``. Each image draws its parameters from a generator seeded with ``seed``
    and the image's own key, so a darkened set is the same on every machine. With ``per_episode`` (the
    default) an environment instead darkens each episode's crop afresh with its own seeded generator:
    training then sees every photo at many exposures and noise draws.

    :param gamma: range of the exponent.
    :param gain: range of the overall gain.
    :param color_cast: each channel's gain is multiplied by ``exp(u)``, ``u ~ U(-color_cast, color_cast)``.
    :param shot_noise: range of the shot-noise variance per unit signal (``(0, 0)``: none).
    :param read_noise: standard deviation of the Gaussian read noise.
    :param seed: seed of the fixed darkening.
    :param per_episode: environments darken each episode afresh (else they use the fixed darkening).
    """

    gamma: tuple[float, float] = (1.8, 2.8)
    gain: tuple[float, float] = (0.2, 0.5)
    color_cast: float = 0.1
    shot_noise: tuple[float, float] = (5e-4, 2e-3)
    read_noise: float = 1.5 / 255
    seed: int = 0
    per_episode: bool = True

    def __post_init__(self) -> None:
        for name in ("gamma", "gain", "shot_noise"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi or not np.isfinite(hi):
                raise ValueError(f"Degradation.{name} must be a range 0 <= lo <= hi, got {(lo, hi)}")
        if not (0.0 <= self.color_cast < np.inf and 0.0 <= self.read_noise < np.inf):
            raise ValueError("Degradation.color_cast and read_noise must be finite and non-negative")

    def apply(self, image: np.ndarray, rng: np.random.Generator,
              with_signal: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A darkened copy of the clean float RGB ``image``, drawn with ``rng``; with ``with_signal``, also its
        noise-free darkening (what a denoiser should give back)."""
        gamma, gain = rng.uniform(*self.gamma), rng.uniform(*self.gain)
        if self.color_cast:
            gain = gain * np.exp(rng.uniform(-self.color_cast, self.color_cast, 3)).astype(np.float32)
        signal = np.clip(gain * np.power(image, gamma), 0.0, 1.0).astype(np.float32)
        low = signal
        if self.shot_noise[1] > 0.0:
            a = rng.uniform(*self.shot_noise)
            low = rng.poisson(signal / a) * a
        low = np.clip(low + rng.normal(0.0, self.read_noise, image.shape), 0.0, 1.0).astype(np.float32)
        return (low, signal) if with_signal else low


# The built-in photos' own darkening (Gaussian noise, no cast): the demo set that `make demo` scores.
BUILTIN_DEGRADATION = Degradation(gamma=(2.0, 2.8), gain=(0.35, 0.6), color_cast=0.0, shot_noise=(0.0, 0.0),
                                  read_noise=0.01)


class _Cache:
    """Decoded images by key, least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: OrderedDict[object, np.ndarray] = OrderedDict()

    def get(self, key: object, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = load()
        value.setflags(write=False)  # shared by every episode that uses it
        self.items[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.max_bytes and len(self.items) > 1:
            self.bytes -= self.items.popitem(last=False)[1].nbytes
        return value


@dataclass(frozen=True)
class _Entry:
    """One image of a source: how to read it, how it is darkened (``None``: a real low-light photo), its
    darkening's seed, and how to read its paired ground truth (real photos)."""

    name: str
    read: Callable[[], np.ndarray]
    degradation: Degradation | None = None
    seed: int = 0
    read_target: Callable[[], np.ndarray] | None = None


class _Column(Sequence):
    """A read-only lazy sequence: ``column[i]`` is ``get(i)``."""

    def __init__(self, get: Callable[[int], np.ndarray | None], n: int) -> None:
        self.get, self.n = get, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.get(k) for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.get(i % self.n)

    def __iter__(self) -> Iterator[np.ndarray | None]:
        return (self.get(i) for i in range(self.n))


@dataclass
class ImageSet:
    """Low-light images with their names and optional ground-truth targets (same size, or ``None``).

    Images come in two kinds. *Real* ones are used as they are (``targets[i]`` is a paired ground truth or
    ``None``). *Darkened* ones are clean photos (the targets) made low-light by their :class:`Degradation`:
    ``images[i]`` is the fixed, seeded darkening; environments darken each episode's crop afresh when the
    degradation is ``per_episode``. ``images`` and ``targets`` are lazy sequences; files are read when first
    needed and kept in a cache of bounded size.

    :param weights: probability of drawing each image at an episode start (``None``: uniform).
    """

    entries: list[_Entry]
    skipped: list[str] = field(default_factory=list)
    weights: np.ndarray | None = None
    cache: _Cache = field(default_factory=_Cache, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def images(self) -> Sequence[np.ndarray]:
        return _Column(self.image, len(self))

    @property
    def targets(self) -> Sequence[np.ndarray | None]:
        return _Column(self.target, len(self))

    def degradation(self, i: int) -> Degradation | None:
        """How image i is darkened, or ``None`` for a real low-light photo."""
        return self.entries[i].degradation

    def image(self, i: int) -> np.ndarray:
        """The low-light image i (for a darkened photo, its fixed, seeded darkening)."""
        entry = self.entries[i]
        if entry.degradation is None:
            return self.cache.get(("image", i), entry.read)
        rng = np.random.default_rng([entry.degradation.seed, entry.seed])
        return self.cache.get(("dark", i), lambda: entry.degradation.apply(self.target(i), rng))

    def target(self, i: int) -> np.ndarray | None:
        """The ground truth of image i (the clean photo of a darkened one), or ``None``."""
        entry = self.entries[i]
        if entry.degradation is not None:
            return self.cache.get(("image", i), entry.read)
        return None if entry.read_target is None else self.cache.get(("target", i), entry.read_target)

    def draw(self, rng: np.random.Generator) -> int:
        """A random index: uniform, or by ``weights``."""
        if self.weights is None:
            return int(rng.integers(len(self)))
        return int(rng.choice(len(self), p=self.weights))


@dataclass(frozen=True)
class Source:
    """One image source of a training mix.

    :param path: a folder (searched recursively) or an image file; or ``builtin[:split]``.
    :param darken: the photos are clean: darken them; else they are real low-light photos, used as they are
        (the built-in photos are always darkened).
    :param weight: share of episodes drawn from this source, relative to the other sources' weights.
    :param part: a slice of the folder's sorted files (e.g. ``slice(24, None)``: all but the first 24), to
        hold some photos aside from training.
    """

    path: str
    darken: bool = False
    weight: float = 1.0
    part: slice = field(default_factory=lambda: slice(None))

    @classmethod
    def parse(cls, spec: str | os.PathLike) -> Source:
        """``[dark:]PATH[[START:STOP]][@WEIGHT]`` or ``builtin[:SPLIT][@WEIGHT]``: e.g. ``dark:bsds500/train@0.5``,
        ``dark:bsds500/train[24:]`` (the sorted files from the 25th on)."""
        text = os.fspath(spec)
        darken = text.startswith(DARKEN_PREFIX)
        text = text[len(DARKEN_PREFIX):] if darken else text
        path, at, weight = text.rpartition("@")
        if not at or "/" in weight or os.sep in weight:
            path, weight = text, "1"
        try:
            value = float(weight)
        except ValueError:
            raise ValueError(f"data source {os.fspath(spec)!r}: the weight after '@' must be a number") from None
        if not value > 0 or not np.isfinite(value):
            raise ValueError(f"data source {os.fspath(spec)!r}: the weight must be positive, got {weight}")
        part = slice(None)
        match = re.fullmatch(r"(.*)\[(-?\d*):(-?\d*)\]", path)
        if match:
            path = match.group(1)
            part = slice(*(int(v) if v else None for v in match.group(2, 3)))
        return cls(path, darken, value, part)

    @property
    def builtin(self) -> bool:
        return self.path == "builtin" or self.path.startswith("builtin:")


def _builtin_photo(name: str) -> np.ndarray:
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return to_float_rgb(left if name == "motorcycle_left" else right)
    if name in _BUILTIN_FILES or not hasattr(skimage.data, name):
        return read_image(Path(skimage.data.data_dir) / _BUILTIN_FILES.get(name, f"{name}.png"))
    return to_float_rgb(getattr(skimage.data, name)())


def _builtin_entries(split: str, degradation: Degradation) -> list[_Entry]:
    names = {"train": BUILTIN_TRAIN, "test": BUILTIN_TEST, "all": BUILTIN_TRAIN + BUILTIN_TEST}.get(split)
    if names is None:
        raise ValueError(f"builtin split must be 'train', 'test' or 'all', got {split!r}")
    # Each photo's darkening is seeded by its place in the full list: a photo degrades alike in every split.
    return [_Entry(n, lambda n=n: _builtin_photo(n), degradation, _SEED_ORDER.index(n)) for n in names]


def builtin_images(split: str = "train", degradation: Degradation = BUILTIN_DEGRADATION) -> ImageSet:
    """The built-in low-light set: scikit-image's colour photos, darkened; targets are the photos.

    :param split: ``"train"``, ``"test"`` (held aside from training) or ``"all"``.
    """
    return ImageSet(_builtin_entries(split, degradation))


def _file_entries(path: Path, degradation: Degradation | None) -> tuple[list[_Entry], list[str]]:
    """Entries of a folder's (or one file's) images; files OpenCV has no reader for are skipped."""
    if not path.exists():
        raise ValueError(f"image source {str(path)!r} does not exist")
    files = [path] if path.is_file() else list_images(path)
    entries, skipped = [], []
    for f in files:
        if not cv2.haveImageReader(str(f)):
            skipped.append(str(f))
            continue

        def read(f: Path = f) -> np.ndarray:
            image = read_image(f)
            if image is None:
                raise ValueError(f"image file {str(f)!r} could not be read")
            return image

        entries.append(_Entry(f.stem, read, degradation, zlib.crc32(f.stem.encode())))
    return entries, skipped


def load_images(
    data: str | os.PathLike | Source | Sequence = "builtin",
    targets: str | os.PathLike | None = None,
    degradation: Degradation | None = None,
) -> ImageSet:
    """Load an image source.

    :param data: ``"builtin"`` (= ``"builtin:train"``), ``"builtin:test"``, ``"builtin:all"``; a folder
        (searched recursively; files OpenCV cannot read are skipped with a warning and listed in
        ``skipped``) or an image file of real low-light photos; ``"dark:PATH"`` for clean photos to darken
        (their targets are the photos); a :class:`Source`; a list of such sources (a mix: each episode
        draws a source by its weight, ``PATH@WEIGHT``, equal by default, then an image of it); or a list
        of arrays (any form :func:`to_float_rgb` accepts).
    :param targets: optional folder of ground-truth images paired with the real images by file stem.
    :param degradation: how clean photos are darkened (default: :data:`BUILTIN_DEGRADATION` for the
        built-in photos, :class:`Degradation`'s low-light model for ``dark:`` folders).
    """
    if isinstance(data, (str, os.PathLike, Source)):
        data = [data]
    if len(data) and all(isinstance(d, (str, os.PathLike, Source)) for d in data):
        result = _load_sources([d if isinstance(d, Source) else Source.parse(d) for d in data], degradation)
    else:
        images = [to_float_rgb(a) for a in data]
        if not images:
            raise ValueError("the list of images is empty")
        result = ImageSet([_Entry(f"image{i}", lambda a=a: a) for i, a in enumerate(images)])
    if targets is not None:
        _pair_targets(result, targets)
    return result


def _load_sources(sources: list[Source], degradation: Degradation | None) -> ImageSet:
    entries, skipped, weights = [], [], []
    for source in sources:
        if source.builtin:
            mine, bad = _builtin_entries(source.path.partition(":")[2] or "train", degradation or BUILTIN_DEGRADATION), []
        else:
            mine, bad = _file_entries(Path(source.path), (degradation or Degradation()) if source.darken else None)
            mine = mine[source.part]
        if bad:
            warnings.warn(f"skipped {len(bad)} unreadable image(s): {', '.join(bad)}", stacklevel=3)
        if not mine:
            raise ValueError(f"no readable image in {source.path!r} (unreadable: {', '.join(bad)})")
        skipped += bad
        entries += mine
        weights += [source.weight / len(mine)] * len(mine)
    p = np.asarray(weights) / np.sum(weights)
    uniform = len(sources) == 1 or np.allclose(p, p[0])
    return ImageSet(entries, skipped, None if uniform else p)


def _pair_targets(images: ImageSet, folder: str | os.PathLike) -> None:
    """Attach the ground truths in ``folder`` to the real images of the same file stem (size checked on read)."""
    by_stem = {f.stem: f for f in list_images(folder)}
    for i, entry in enumerate(images.entries):
        if entry.degradation is not None or entry.name not in by_stem:
            continue

        def read(path: Path = by_stem[entry.name], i: int = i) -> np.ndarray:
            target = read_image(path)
            if target is None or target.shape != images.image(i).shape:
                raise ValueError(f"target {str(path)!r} is unreadable or not the size of its image")
            return target

        images.entries[i] = _Entry(entry.name, entry.read, None, entry.seed, read)


@dataclass(frozen=True)
class Augmentation:
    """Random crops, flips and small rotations, as released (PixelRL's loader), and optional rescaling.

    Only the crop is computed: a flip and a rotation become one affine map from the photo to the crop window
    (``cv2.warpAffine`` of ``crop_size**2`` pixels), never a transformed copy of the whole photo.

    :param crop_size: side of the square crop; ``None`` keeps the whole image. An image smaller than the
        crop is first resized (bilinear) so that its shorter side equals ``crop_size``.
    :param flip_prob: probability of a horizontal flip.
    :param rotate_prob: probability of a rotation about the image centre by up to ``max_rotation`` degrees
        either way (border reflected, where the released code filled black).
    :param min_scale: below 1, the image is first shrunk (area interpolation) by a factor drawn
        log-uniformly from ``[min_scale, 1]``, so that the agent sees scenes at many scales, as it does
        photos of any resolution and fast enhancement's downscaled copy (1, the default, draws nothing).
    :param fit_scale: when set (at least 1), the image is first resized (area interpolation) so that its
        shorter side is ``crop_size * v``, ``v`` drawn log-uniformly from ``[1, fit_scale]``: each crop then
        shows most of the scene, as a loss on whole-image statistics needs (``None``, the default: no fit).
    """

    crop_size: int | None = 70
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_rotation: float = 10.0
    min_scale: float = 1.0
    fit_scale: float | None = None

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 16:
            raise ValueError(f"crop_size must be at least 16 (one exposure patch), got {self.crop_size}")
        if not 0.0 < self.min_scale <= 1.0:
            raise ValueError(f"min_scale must lie in (0, 1], got {self.min_scale}")
        for name in ("flip_prob", "rotate_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.max_rotation <= 180.0:
            raise ValueError(f"max_rotation must lie in [0, 180] degrees, got {self.max_rotation}")
        if self.fit_scale is not None:
            if self.crop_size is None or not 1.0 <= self.fit_scale < np.inf:
                raise ValueError(f"fit_scale needs a crop_size and must be at least 1, got {self.fit_scale}")
            if self.min_scale < 1.0:
                raise ValueError("fit_scale and min_scale both set the scale: give one of them")

    def __call__(
        self, rng: np.random.Generator, image: np.ndarray, target: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment ``image`` (and ``target`` alike); the random draws are the same with or without target.

        :return: new float32 arrays (never views of the inputs).
        """
        pair = [image] if target is None else [image, target]
        if self.min_scale < 1.0 or self.fit_scale is not None:
            h, w = image.shape[:2]
            if self.fit_scale is not None:
                scale = self.crop_size * float(np.exp(rng.uniform(0.0, np.log(self.fit_scale)))) / min(h, w)
            else:
                scale = float(np.exp(rng.uniform(np.log(self.min_scale), 0.0)))
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            method = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            pair = [cv2.resize(p, size, interpolation=method).reshape(size[1], size[0], 3) for p in pair]
        flip = rng.random() < self.flip_prob
        angle = float(rng.uniform(-self.max_rotation, self.max_rotation)) if rng.random() < self.rotate_prob else None
        c = self.crop_size
        h, w = pair[0].shape[:2]
        if c is not None and min(h, w) < c:
            scale = c / min(h, w)
            size = (max(c, round(w * scale)), max(c, round(h * scale)))
            pair = [cv2.resize(p, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], 3) for p in pair]
            h, w = pair[0].shape[:2]
        y, x = (0, 0) if c is None else (int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1)))
        out_h, out_w = (h, w) if c is None else (c, c)
        if angle is None:
            if flip:  # the window of the flipped photo is the mirrored window of the photo, mirrored
                pair = [p[y : y + out_h, w - x - out_w : w - x][:, ::-1] for p in pair]
            else:
                pair = [p[y : y + out_h, x : x + out_w] for p in pair]
            out = [np.array(p, dtype=np.float32) for p in pair]
        else:
            # photo -> flipped photo -> rotated about the centre -> crop window, as one affine map
            m = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), [0.0, 0.0, 1.0]])
            if flip:
                m = m @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            m[:2, 2] -= (x, y)
            out = [cv2.warpAffine(p, m[:2], (out_w, out_h), borderMode=cv2.BORDER_REFLECT_101)
                   .reshape(out_h, out_w, 3).astype(np.float32, copy=False) for p in pair]
        return out[0], (out[1] if target is not None else None)
