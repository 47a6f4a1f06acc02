"""``LowLight-v0``: ReLLIE's low-light enhancement as a Gymnasium environment."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rellie_env.config import EnvConfig, check_actions, episode_exposure, sample_start, start_image
from rellie_env.core import EpisodeInput, observation, state_loss, transition
from rellie_env.images import to_nchw
from rellie_env.metrics import psnr, ssim


class LowLightEnv(gym.Env):
    """
    ## Description

    ReLLIE (Zhang et al., ACM MM 2021) casts low-light enhancement as multi-agent reinforcement learning
    after PixelRL: every pixel is an agent. At each step each pixel picks, per colour channel, a curve
    strength α from a discrete set, and the image moves along the light-enhancement curve
    ``LE(x) = x + α·x·(1 − x)``, blended with the previous image. The reward is built from non-reference
    losses, so no ground-truth image is needed to learn. With the default arguments the dynamics and the
    reward are those of the released code (checked against a run of it).

    ## Action Space

    ``MultiDiscrete`` with ``nvec`` of shape ``(3, H, W)``, ``n_actions`` (27) values each: the action map.
    Channel c of the map acts on RGB channel c, with ``α = (a − action_offset) · action_scale``, that is
    ``α ∈ {−0.30, −0.25, …, 1.00}`` by default. As released, the two other channels follow the lead channel
    (default 2, blue; the released model saw OpenCV's BGR images whose channel 0 is blue):
    ``α'_c = (1 − lead_weight)·α_c + lead_weight·α_lead``. The step is
    ``x ← blend·LE(x; α') + (1 − blend)·x`` with ``blend = 0.8``. Any integer array of that shape works;
    a wrong shape or a value out of range raises a ``ValueError`` saying what was expected.

    ## Observation Space

    ``Box(0, 1, (3, H, W), float32)``: the current image, RGB, channels first; a fresh array every step.
    ``H = W = crop_size`` (70); with ``crop_size=None`` the spaces take the size of the image an episode
    starts from, so they may change at ``reset``. With ``exposure_range`` the observation is
    ``Box(0, 1, (4, H, W))``: a fourth plane holds the episode's target brightness E at every pixel, so the
    policy stays fully convolutional and any SB3 policy sees the target.

    ## Rewards

    The non-reference loss of ReLLIE (see :mod:`rellie_env.losses`): spatial consistency against the
    episode's input (×``spatial_weight``, 1), exposure of 16×16 patches against level ``E = 0.6``
    (×``exposure_weight``, 80), colour constancy (grey-world ×``color_weight``, 50; or the 2022 ratio term
    with ``color_mode="ratio"``, best with ``color_weight=20``), smoothness of the α maps (×200). Two terms
    the released code lacks are off by default: ``statistics`` (the distance of the image's mean
    log-brightness to ``log E`` and of its white point, the mean log-brightness of its brightest 0.5 %, to
    natural photos'; the term rellie's own recipe trains on alone) and ``chroma`` (colour departing from a
    power law of the input's). With ``exposure_range`` the exposure and statistics terms use the episode's E.
    ``reward_mode``:

    * ``"paper"``: minus the loss of the new state, one scalar (as released);
    * ``"delta"``: the loss of the image before the step minus after it, minus the smoothness charge;
    * ``"pixel"``: a per-pixel map of the same terms made local: exposure per 16×16 patch, spatial
      consistency per 4×4 block, smoothness per pixel, colour per image, upsampled to ``H × W``;
    * ``"pixel-delta"``: each pixel's share of the drop of the image's loss in this step, to first order
      (``−H·W·∂L/∂x'·(x' − x)``, summed over channels), minus its local smoothness charge. This is a
      *difference reward* (what this pixel's own change did to the loss, the others' held fixed), the
      credit assignment of multi-agent RL; its mean is the ``"delta"`` reward to first order.
    * ``"head-delta"``: the same share split among the three heads of each pixel, a ``(3, H, W)`` map: what
      each head's own α did, through the channel coupling too (the lead head also moves the other channels).
      With it every (pixel, head) pair is an agent with its own credit; the maps add up to ``"pixel-delta"``'s.

    In every mode ``info["reward_map"]`` is that ``(H, W)`` float32 map (``(3, H, W)`` in ``"head-delta"``)
    and the returned reward is its mean over pixels (summed over heads), so a pixel-wise learner and a stock
    learner see the same signal. ``info`` also holds each unweighted loss term of the new state
    (``"loss/<term>"`` for the terms of :data:`rellie_env.losses.LOSS_TERMS`) and ``"image_loss"``, the
    weighted loss of the new image without smoothness.

    ## Starting State

    An image from ``data``: with ``"builtin"``, the colour photos scikit-image ships, made low-light by a
    seeded degradation (see :class:`rellie_env.images.Degradation`); the photos themselves are the
    targets. A random image is cropped to ``crop_size`` after a random flip and small rotation, as released.
    ``reset(options={"image": array})`` starts from that image as it is (uint8, uint16 or float in [0, 1],
    ``H × W``, ``H × W × 3`` or RGBA), no crop; ``options={"index": i}`` from the i-th source image.
    With ``exposure_range=(lo, hi)`` each episode draws its E uniformly from the range (from the env's
    seeded generator: the same seed gives the same sequence), or takes ``options={"exposure": E}``;
    ``info["exposure"]`` holds it.

    ## Episode End

    The episode is truncated after ``max_steps`` steps (10 in training as released; 6 at test time).
    It never terminates. When the source has a target for the image, ``info["psnr"]`` and ``info["ssim"]``
    (uint8 RGB; SSIM with a Gaussian window, σ = 1.5) come with the last step.

    ## Arguments

    ```python
    import gymnasium as gym
    import rellie_env
    env = gym.make("LowLight-v0", data="builtin", crop_size=70, max_steps=10, reward_mode="paper")
    ```

    * ``data``: ``"builtin"`` (``"builtin:train"``), ``"builtin:test"`` (held-aside photos),
      ``"builtin:all"``, a folder of low-light photos (recursive; png, jpg, bmp, tif; LOL's ``our485/low``
      works as is), ``"dark:FOLDER"`` (clean photos, darkened afresh each episode by
      :class:`rellie_env.images.Degradation`; the photos are the targets), ``"FOLDER[a:b]"`` (a slice of its
      sorted files), an image file, a list of those (a mix; ``"SOURCE@W"`` weights a source), or a list of
      arrays. ``targets``: a folder of ground truths paired by file stem.
    * ``crop_size`` (70, ``None`` for whole images; an image smaller than the crop is first resized up),
      ``flip_prob`` (0.5), ``rotate_prob`` (0.5), ``max_rotation`` (10 degrees), ``min_scale`` (1: below
      1, each image is first shrunk by a factor drawn log-uniformly from ``[min_scale, 1]``), ``fit_scale``
      (``None``; v ≥ 1: each image is first resized so that its shorter side is ``crop_size`` times a factor
      drawn log-uniformly from ``[1, v]``, so a crop shows most of the scene).
    * ``max_steps`` (10), ``reward_mode`` (``"paper"``, ``"delta"``, ``"pixel"``, ``"pixel-delta"``,
      ``"head-delta"``).
    * ``exposure_level`` (0.6), ``exposure_range`` (``None``, or ``(lo, hi)``: a target per episode, in the
      observation), ``exposure_patch`` (16), ``spatial_weight``, ``exposure_weight``, ``color_weight``,
      ``smoothness_weight``, ``statistics_weight`` (0), ``chroma_weight`` (0), ``color_mode``
      (``"grey-world"`` or ``"ratio"``).
    * ``n_actions`` (27), ``action_offset`` (6), ``action_scale`` (1/20), ``lead_channel`` (2, or ``None``),
      ``lead_weight`` (0.9), ``blend`` (0.8).
    * ``degradation``: a :class:`rellie_env.images.Degradation` for the built-in photos.
    * ``render_mode``: ``"rgb_array"`` gives an ``H × 2W × 3`` uint8 picture, input beside current image.

    ## Vectorized environment

    ``gym.make_vec("LowLight-v0", num_envs=B)`` returns :class:`rellie_env.vector.LowLightVectorEnv`, which
    steps all B images as one torch batch (``device="cuda"`` keeps them on the GPU) with the same maths;
    it resets finished sub-environments in the same step (``AutoresetMode.SAME_STEP``).
    :class:`rellie_env.vector.LowLightSB3VecEnv` is the same for stable-baselines3.

    ```python
    envs = gym.make_vec("LowLight-v0", num_envs=4, crop_size=32)
    obs, info = envs.reset(seed=0)
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    ```

    ## Example

    ```python
    env = gym.make("LowLight-v0", crop_size=64, max_steps=6)
    obs, info = env.reset(seed=0)
    brighten = np.full(env.action_space.shape, 26)  # alpha = 1.0 everywhere
    obs, reward, terminated, truncated, info = env.step(brighten)
    ```
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = EnvConfig.from_kwargs(**kwargs)
        self.source = self.config.load_source()
        self.render_mode = render_mode
        crop = self.config.augmentation.crop_size
        shape = self.source.image(0).shape[:2] if crop is None else (crop, crop)
        self._set_spaces(shape)
        self._image = self._original = self._target = self._loss = None
        self._steps = 0

    def _set_spaces(self, hw: tuple[int, int]) -> None:
        planes = 3 if self.config.exposure_range is None else 4
        self.observation_space = spaces.Box(0.0, 1.0, (planes, *hw), np.float32)
        self.action_space = spaces.MultiDiscrete(np.full((3, *hw), self.config.action_set.n_actions, dtype=np.int64))

    def _observation(self) -> np.ndarray:
        return observation(self._image, self._original.exposure)[0].numpy().copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        if "image" in options:
            image, target = start_image(options["image"], options.get("target"), self.config.weights)
        else:
            image, target = sample_start(self.np_random, self.source, self.config.augmentation, options.get("index"))
        exposure = episode_exposure(self.np_random, self.config, options.get("exposure"))
        if image.shape[:2] != self.observation_space.shape[1:]:
            self._set_spaces(image.shape[:2])
        self._original = EpisodeInput.of(to_nchw(image).contiguous(), self.config.weights,
                                         None if exposure is None else torch.tensor([exposure]))
        self._image = self._original.image  # never written in place: each step makes a new tensor
        self._target = None if target is None else to_nchw(target).contiguous()
        self._loss = state_loss(self._image, self._original, self.config.weights)
        self._steps = 0
        info = {"image_loss": float(self._loss[0])}
        if exposure is not None:
            info["exposure"] = exposure
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._image is None:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(action, self.action_space.shape, self.config.action_set.n_actions)
        t = transition(
            self._image,
            self._original,
            torch.from_numpy(actions)[None],
            self.config.action_set,
            self.config.weights,
            self.config.reward_mode,
            self._loss,
        )
        self._image, self._loss = t.image, t.image_loss
        self._steps += 1
        truncated = self._steps >= self.config.max_steps
        reward_map = np.ascontiguousarray(t.reward_map[0].numpy())
        info: dict[str, Any] = {"reward_map": reward_map, "image_loss": float(t.image_loss[0])}
        info.update({f"loss/{k}": float(v[0]) for k, v in t.terms.items()})
        if truncated and self._target is not None and self.config.fidelity:
            info["psnr"] = float(psnr(self._image, self._target)[0])
            info["ssim"] = float(ssim(self._image, self._target)[0])
        return self._observation(), float(t.reward[0]), False, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._image is None:
            return None
        both = torch.cat((self._original.image[0], self._image[0]), dim=2)
        return (both.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
