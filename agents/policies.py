"""The fully convolutional ReLLIE actor-critic as an SB3 ``ActorCriticPolicy``.

SB3's pieces keep their roles: the features extractor is the shared dilated trunk, the "mlp_extractor"
holds the policy and value branches, ``action_net`` the three 27-way heads and ``value_net`` the
per-pixel value. Everything is convolutional, so one set of weights acts on an image of any size.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from agents.distributions import PixelCategoricalDistribution
from rellie_env.core import observation
from rellie_env.curves import ActionSet
from rellie_env.losses import brightness_statistics


def dilated_conv(channels_in: int, channels_out: int, dilation: int) -> nn.Conv2d:
    """3x3 convolution that keeps the image size."""
    return nn.Conv2d(channels_in, channels_out, 3, padding=dilation, dilation=dilation)


def conv_stack(channels_in: int, width: int, dilations: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d in dilations:
        layers += [dilated_conv(channels_in, width, d), nn.ReLU(inplace=True)]  # in place: one allocation less
        channels_in = width
    return nn.Sequential(*layers)


def color_context(images: torch.Tensor, exposure: bool = False) -> torch.Tensor:
    """Log-chromaticity of each image's mean colour, ``(B, 3)``: how far (in log units) each channel's mean
    lies from the three channels' geometric mean; zero for a grey-balanced image, whatever its exposure.

    :param exposure: append that geometric mean's log and the image's
        :func:`~rellie_env.losses.brightness_statistics` (its mean log-brightness and that of its brightest
        pixels), ``(B, 6)``: how bright the image is and where its highlights lie.
    """
    images = images.float()
    log_mean = images.mean((2, 3)).clamp_min(1e-3).log()
    level = log_mean.mean(1, keepdim=True)
    if not exposure:
        return log_mean - level
    mean, white = brightness_statistics(images)
    return torch.cat((log_mean - level, level, mean[:, None], white[:, None]), 1)


def most_likely(logits: torch.Tensor) -> torch.Tensor:
    """Index of the largest logit per head and pixel: ``(B, heads, n_actions, H, W)`` -> ``(B, heads, H, W)``.

    Channels-last logits (as in enhancement) hold each pixel's and head's logits side by side; reducing
    those rows is ~20 % faster than reducing the strided action dimension.
    """
    rows = logits.permute(0, 3, 4, 1, 2)
    if not rows.is_contiguous():
        return logits.max(2).indices
    return rows.reshape(-1, logits.shape[2]).max(1).indices.view(rows.shape[:-1]).permute(0, 3, 1, 2)


class ReLLIETrunk(BaseFeaturesExtractor):
    """Shared trunk: conv 3x3 (3 -> width), then dilated 3x3 convs (dilation 2, 3, 4 as released), ReLU.

    :param observation_space: ``Box(0, 1, (3, H, W))``.
    :param width: channels of every hidden layer (64 as released).
    :param dilations: dilations after the first conv.
    :param global_color: add a learned function of the whole image's :func:`color_context` to the first
        layer's output (a per-image bias). The grey-world colour term scores the channel means of the whole
        image, which a 33-pixel receptive field cannot see; without it a pixel can only guess the image's cast.
    :param global_exposure: with ``global_color``, that function also sees the image's overall brightness
        (``color_context(..., exposure=True)``): how far to brighten depends on the whole image, not only on
        what a pixel's neighbourhood shows. With a fourth observation plane (the target brightness E) it sees
        log E as well, next to the image's own log-brightness that it is compared with.
    """

    def __init__(self, observation_space: spaces.Box, width: int = 64, dilations: Sequence[int] = (2, 3, 4),
                 global_color: bool = False, global_exposure: bool = False):
        super().__init__(observation_space, features_dim=width)
        if global_exposure and not global_color:
            raise ValueError("global_exposure needs global_color (the brightness is one more input of that layer)")
        self.net = conv_stack(observation_space.shape[0], width, (1, *dilations))
        self.global_exposure = global_exposure
        self.targeted = global_exposure and observation_space.shape[0] == 4
        self.color = nn.Linear((6 + self.targeted) if global_exposure else 3, width) if global_color else None

    def context(self, observations: torch.Tensor) -> torch.Tensor | None:
        """The whole-image input of :meth:`forward` for whole-image observations (``None`` without
        ``global_color``)."""
        if self.color is None:
            return None
        context = color_context(observations[:, :3], self.global_exposure)
        if not self.targeted:
            return context
        return torch.cat((context, observations[:, 3].float().mean((1, 2)).clamp_min(1e-3).log()[:, None]), 1)

    def forward(self, observations: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Features of ``observations``; ``context`` is the :meth:`context` of the whole image when
        ``observations`` is one tile of it (default: that of ``observations``)."""
        if self.color is None:
            return self.net(observations)
        context = self.context(observations) if context is None else context
        first = self.net[0](observations)
        return self.net[1:](first.add_(self.color(context.to(first.dtype))[:, :, None, None]))  # a per-image bias


class PixelBranches(nn.Module):
    """Policy and value branches after the trunk (dilations 3, 2 as released), SB3's ``mlp_extractor``."""

    def __init__(self, width: int, dilations: Sequence[int] = (3, 2)) -> None:
        super().__init__()
        self.latent_dim_pi = self.latent_dim_vf = width
        self.policy_net = conv_stack(width, width, dilations)
        self.value_net = conv_stack(width, width, dilations)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)


class PixelHeads(nn.Module):
    """The heads (one per colour channel) as one 3x3 conv giving logits ``(B, heads, n_actions, H, W)``."""

    def __init__(self, width: int, n_heads: int, n_actions: int) -> None:
        super().__init__()
        self.n_heads, self.n_actions = n_heads, n_actions
        self.conv = nn.Conv2d(width, n_heads * n_actions, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, _, h, w = latent.shape
        # float32 logits also under bf16 autocast: the softmax of 27 actions needs the precision
        return self.conv(latent).float().view(b, self.n_heads, self.n_actions, h, w)


class PixelActorCriticPolicy(ActorCriticPolicy):
    """ReLLIE's network as an SB3 policy: a per-pixel categorical policy and a per-pixel value map.

    Works with the action map ``MultiDiscrete((3, H, W))`` of ``LowLight-v0`` and with its flattened form
    (:class:`agents.wrappers.FlattenActionMap`) for SB3's stock ``A2C``/``PPO``. The stock interface
    (``forward``, ``evaluate_actions``, ``predict_values``) sums log-probabilities and entropies over the
    image and averages the value map; the pixel-wise algorithms use :meth:`act_pixels`,
    :meth:`evaluate_pixels` and :meth:`value_map`, which keep one value per pixel (and per head with
    ``per_head``).

    :param observation_space: ``Box(0, 1, (3, H, W))``.
    :param action_space: ``MultiDiscrete`` with ``nvec`` all equal, of shape ``(3, H, W)`` or ``(3*H*W,)``.
    :param lr_schedule: learning-rate schedule.
    :param width: channels of the hidden layers (64 as released).
    :param trunk_dilations: dilations of the trunk after its first conv ((2, 3, 4) as released).
    :param branch_dilations: dilations of each branch ((3, 2) as released).
    :param init_alpha: when set, the heads start as a smooth distribution peaked at this curve strength
        (one value, or one per head), the same at every pixel (weights scaled by ``init_weight_scale``);
        ``None`` keeps torch's init.
    :param init_alpha_spread: standard deviation of that starting distribution, in alpha units.
    :param init_weight_scale: factor on the heads' initial weights when ``init_alpha`` is set.
    :param action_set: the arguments of the :class:`~rellie_env.curves.ActionSet` the policy acts in (saved
        with it, so that enhancement steps as training did); default: the released one.
    :param deterministic_action: what the policy does when asked to act deterministically: ``"mode"``, the
        most likely action (as released), or ``"mean"``, the action nearest to the expected curve strength.
        Pixel agents trained with difference rewards settle on mixed strategies (a pixel's own effect on the
        image's loss is tiny, so its payoff is nearly linear in its action) whose mean, not mode, is the right
        step: the shipped model acts so.
    :param per_head: one value map and one log-probability map per head, ``(B, heads, H, W)``, for per-head
        rewards (``reward_mode="head-delta"``): each (pixel, head) pair is then an agent with its own
        advantage. Otherwise one of each per pixel, ``(B, 1, H, W)``, log-probabilities summed over heads.
    :param global_color: the trunk also sees the whole image's mean colour (:class:`ReLLIETrunk`); tiled
        inference then passes the whole image's :func:`color_context` to every tile.
    :param global_exposure: with ``global_color``, the trunk also sees the whole image's brightness.
    :param exposure: the target brightness E the policy was trained for (of an env with one E), or the E it
        uses unless told otherwise (of an env with ``exposure_range``); ``None``: unknown.
    :param exposure_range: ``(lo, hi)`` for a policy trained with a target brightness per episode: its
        observations carry E as a fourth plane, and it enhances to any E in the range (:meth:`observe`).
    :param kwargs: further arguments of SB3's ``ActorCriticPolicy`` (optimizer, ...).
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.MultiDiscrete,
        lr_schedule,
        width: int = 64,
        trunk_dilations: Sequence[int] = (2, 3, 4),
        branch_dilations: Sequence[int] = (3, 2),
        init_alpha: float | Sequence[float] | None = None,
        init_alpha_spread: float = 0.25,
        init_weight_scale: float = 0.1,
        deterministic_action: str = "mode",
        action_set: dict[str, Any] | None = None,
        per_head: bool = False,
        global_color: bool = False,
        global_exposure: bool = False,
        exposure: float | None = None,
        exposure_range: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if deterministic_action not in ("mode", "mean"):
            raise ValueError(f"deterministic_action must be 'mode' or 'mean', got {deterministic_action!r}")
        nvec = np.asarray(action_space.nvec)
        c, h, w = observation_space.shape
        if nvec.size % (h * w) or not (nvec == nvec.flat[0]).all():
            raise ValueError(f"expected an action map of shape (heads, {h}, {w}) with equal nvec, got {nvec.shape}")
        self.n_heads, self.n_actions = nvec.size // (h * w), int(nvec.flat[0])
        # What the policy is, beyond SB3's arguments: saved with it and given back to this constructor.
        self.pixel_kwargs = dict(width=width, trunk_dilations=tuple(trunk_dilations),
                                 branch_dilations=tuple(branch_dilations), init_alpha=init_alpha,
                                 init_alpha_spread=init_alpha_spread, init_weight_scale=init_weight_scale,
                                 deterministic_action=deterministic_action,
                                 action_set=dict(action_set or {"n_actions": self.n_actions}), per_head=per_head,
                                 global_color=global_color, global_exposure=global_exposure, exposure=exposure,
                                 exposure_range=None if exposure_range is None else tuple(exposure_range))
        if (c == 4) != (exposure_range is not None):
            raise ValueError("a policy has a fourth observation plane (the target brightness) exactly when it is given "
                             f"an exposure_range; got {c} planes and exposure_range={exposure_range}")
        for name, value in self.pixel_kwargs.items():
            if name != "action_set":
                setattr(self, name, value)
        self.value_heads = self.n_heads if per_head else 1
        self.action_set = ActionSet(**self.pixel_kwargs["action_set"])
        if self.action_set.n_actions != self.n_actions:
            raise ValueError(f"the action set has {self.action_set.n_actions} actions, the action space {self.n_actions}")
        kwargs.setdefault("ortho_init", False)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            features_extractor_class=ReLLIETrunk,
            features_extractor_kwargs=dict(width=width, dilations=self.trunk_dilations, global_color=global_color,
                                            global_exposure=global_exposure),
            normalize_images=False,
            **kwargs,
        )

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = PixelBranches(self.width, self.branch_dilations)

    def _build(self, lr_schedule) -> None:
        self._build_mlp_extractor()
        self.register_buffer("alpha_values", self.action_set.alpha_values())
        self.action_dist = PixelCategoricalDistribution(self.n_actions)
        self.action_net = PixelHeads(self.width, self.n_heads, self.n_actions)
        self.value_net = nn.Conv2d(self.width, self.value_heads, 3, padding=1)
        if self.init_alpha is not None:
            self._init_heads(self.init_alpha, self.init_alpha_spread, self.init_weight_scale)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    @torch.no_grad()
    def _init_heads(self, alpha: float | Sequence[float], spread: float, weight_scale: float) -> None:
        """Start near a gentle, smooth change: the same peaked distribution at every pixel."""
        alphas = torch.tensor([alpha] * self.n_heads if np.isscalar(alpha) else list(alpha), dtype=torch.float32)
        if len(alphas) != self.n_heads:
            raise ValueError(f"init_alpha needs one value or {self.n_heads}, got {len(alphas)}")
        logits = -((self.alpha_values.view(1, -1) - alphas.view(-1, 1)) ** 2) / (2 * spread**2)
        self.action_net.conv.weight.mul_(weight_scale)
        self.action_net.conv.bias.copy_((logits - logits.mean(1, keepdim=True)).flatten())

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs",
                    "normalize_images", "use_sde", "log_std_init", "squash_output", "full_std", "use_expln"):
            data.pop(key, None)
        data.update(self.pixel_kwargs)
        return data

    def observe(self, images: torch.Tensor, exposure: float | None = None) -> torch.Tensor:
        """The policy's observations of images ``(B, 3, H, W)``: as they are, or for a policy with an
        ``exposure_range`` with the target brightness ``exposure`` (default: the policy's ``exposure``) as a
        fourth plane. A conditioned policy refuses an E outside its range; one without a range warns (once per
        place of call) when asked for an E other than its own, which it cannot follow."""
        if self.exposure_range is None:
            if exposure is not None and self.exposure is not None and abs(exposure - self.exposure) > 1e-6:
                warnings.warn(f"this model was trained for one target brightness, E = {self.exposure:g}, and "
                              f"cannot follow E = {exposure:g}; train with an exposure range to choose E", stacklevel=3)
            return images
        exposure = self.exposure if exposure is None else exposure
        lo, hi = self.exposure_range
        if exposure is None or not lo <= exposure <= hi:
            raise ValueError(f"this model was trained for target brightnesses E in [{lo:g}, {hi:g}]; got E = {exposure}")
        return observation(images, torch.full((images.shape[0],), float(exposure), device=images.device))

    # -- pixel-wise interface ---------------------------------------------------------------------------
    def action_logits(self, obs: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, heads, n_actions, H, W)`` of images ``(B, 3, H, W)`` of any size (no value branch).

        :param context: with ``global_color``, the trunk's :meth:`~ReLLIETrunk.context` of the whole images
            when ``obs`` are tiles of them (default: that of ``obs``); ignored otherwise.
        """
        return self.action_net(self.mlp_extractor.forward_actor(self.features_extractor(obs.float(), context)))

    def distribution(self, obs: torch.Tensor) -> PixelCategoricalDistribution:
        """The action distribution of images ``(B, 3, H, W)`` of any size (the value branch is not run)."""
        return self.action_dist.proba_distribution(self.action_logits(obs))

    def greedy_actions(
        self, obs: torch.Tensor, dist: PixelCategoricalDistribution | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The deterministic action map ``(B, heads, H, W)`` (see ``deterministic_action``); ``context`` as
        for :meth:`action_logits`."""
        if dist is None:
            logits = self.action_logits(obs, context)
            if self.deterministic_action == "mode":
                # The most likely action is the largest logit: no softmax needed (a tenth of inference time).
                return most_likely(logits)
            dist = self.action_dist.proba_distribution(logits)
        return dist.mode() if self.deterministic_action == "mode" else dist.mean_action(self.alpha_values)

    def value_map(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-pixel values ``(B, value_heads, H, W)``."""
        return self.value_net(self.mlp_extractor.forward_critic(self.extract_features(obs))).float()

    def act_pixels(self, obs: torch.Tensor, deterministic: bool = False, generators: list | None = None):
        """Sample (or take the deterministic) action map: ``(actions (B, heads, H, W) uint8, values, log_probs)``,
        values and log-probabilities ``(B, value_heads, H, W)``; ``generators``: one per image (see
        :meth:`~agents.distributions.PixelCategoricalDistribution.sample`)."""
        latent_pi, latent_vf = self.mlp_extractor(self.extract_features(obs))
        dist = self.action_dist.proba_distribution(self.action_net(latent_pi))
        actions = self.greedy_actions(obs, dist) if deterministic else dist.sample(generators)
        values = self.value_net(latent_vf).float()
        return actions.to(torch.uint8), values, dist.log_prob_map(actions, self.per_head)

    def evaluate_pixels(self, obs: torch.Tensor, actions: torch.Tensor):
        """``(values, log_probs, entropies (B, H, W), distribution)`` of given action maps; values and
        log-probabilities ``(B, value_heads, H, W)``, entropies summed over heads."""
        latent_pi, latent_vf = self.mlp_extractor(self.extract_features(obs))
        dist = self.action_dist.proba_distribution(self.action_net(latent_pi))
        values = self.value_net(latent_vf).float()
        return values, dist.log_prob_map(actions, self.per_head), dist.entropy_map(), dist

    # -- SB3's stock interface: one joint action, one value per image -------------------------------------
    def forward(self, obs: torch.Tensor, deterministic: bool = False):
        actions, values, log_probs = self.act_pixels(obs, deterministic)
        return self._as_action(actions.long(), obs), self._image_value(values), log_probs.sum((1, 2, 3))

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor):
        b, _, h, w = obs.shape
        values, log_probs, entropies, _ = self.evaluate_pixels(obs, actions.view(b, self.n_heads, h, w))
        return self._image_value(values), log_probs.sum((1, 2, 3)), entropies.sum((1, 2))

    def get_distribution(self, obs: torch.Tensor) -> PixelCategoricalDistribution:
        return self.distribution(obs)

    def predict_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self._image_value(self.value_map(obs))

    @staticmethod
    def _image_value(values: torch.Tensor) -> torch.Tensor:
        """One value per image ``(B, 1)`` from value maps: summed over heads, averaged over pixels."""
        return values.sum(1).mean((1, 2)).view(-1, 1)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(observation)
        actions = self.greedy_actions(observation, dist) if deterministic else dist.sample()
        return self._as_action(actions, observation)

    def _as_action(self, actions: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Action maps ``(B, heads, H, W)`` in the form of the action space, at the observations' size: maps, or
        flattened for :class:`agents.wrappers.FlattenActionMap`."""
        return actions.reshape(obs.shape[0], -1) if len(self.action_space.shape) == 1 else actions

    def obs_to_tensor(self, observation: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
        """An image ``(3, H, W)`` or a batch ``(B, 3, H, W)`` of images of one size, any size (the network is
        fully convolutional), as a float tensor on the policy's device; and whether it was a batch."""
        obs = torch.as_tensor(np.asarray(observation) if not isinstance(observation, torch.Tensor) else observation,
                              dtype=torch.float32, device=self.device)
        channels = self.observation_space.shape[0]
        if obs.dim() not in (3, 4) or obs.shape[-3] != channels:
            raise ValueError(f"expected an image ({channels}, H, W) or a batch (B, {channels}, H, W), "
                             f"got shape {tuple(obs.shape)}")
        return (obs, True) if obs.dim() == 4 else (obs[None], False)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """SB3's ``predict`` for images of any size: the action map of ``observation`` (``(3, H, W)`` gives
        ``(3, H, W)``; a batch ``(B, 3, H, W)`` gives ``(B, 3, H, W)``), as int64 numpy."""
        self.set_training_mode(False)
        obs, batched = self.obs_to_tensor(observation)
        with torch.no_grad():
            actions = self._predict(obs, deterministic).long().cpu().numpy()
        return (actions if batched else actions[0]), state
