"""One transition of ReLLIE's decision process for a batch of images, in torch.

:func:`transition` is the single place where an action map becomes a new image and a reward map;
:class:`~rellie_env.env.LowLightEnv` calls it with a batch of one, the batched environment with B.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rellie_env.curves import ActionSet
from rellie_env.losses import (
    LOSS_TERMS,
    NO_REFERENCE_TERMS,
    LossWeights,
    grey_blocks,
    image_loss,
    loss_map,
    loss_terms,
    smoothness_map,
    weighted_sum,
)

REWARD_MODES = ("paper", "delta", "pixel", "pixel-delta", "head-delta")
DIFFERENCE_MODES = ("pixel-delta", "head-delta")


@dataclass
class EpisodeInput:
    """What an episode started from: the images ``(B, 3, H, W)``, their grey blocks for L_spa, and each
    image's target brightness ``(B,)`` when the env draws one per episode (``None``: the loss's own)."""

    image: torch.Tensor
    blocks: torch.Tensor
    exposure: torch.Tensor | None = None

    @classmethod
    def of(cls, image: torch.Tensor, weights: LossWeights, exposure: torch.Tensor | None = None) -> EpisodeInput:
        return cls(image, grey_blocks(image, weights.spatial_block), exposure)


@dataclass
class Transition:
    """Result of one step for a batch: new images ``(B,3,H,W)``, alpha before coupling ``(B,3,H,W)``,
    reward maps ``(B,H,W)`` (an expanded view of ``reward`` in the scalar modes; ``(B,3,H,W)``, one map per
    head, in ``"head-delta"``) and the rewards ``(B,)`` (the mean over pixels of the summed maps; both ``None``
    without a reward mode), the unweighted loss terms of the new state ``{name: (B,)}`` and the weighted loss of
    the new image alone ``(B,)`` (what ``"delta"`` compares)."""

    image: torch.Tensor
    alpha: torch.Tensor
    reward_map: torch.Tensor | None
    reward: torch.Tensor | None
    terms: dict[str, torch.Tensor]
    image_loss: torch.Tensor


def observation(image: torch.Tensor, exposure: torch.Tensor | None) -> torch.Tensor:
    """What the agents see: the images ``(B, 3, H, W)``, and with a target brightness per image ``(B,)`` a
    fourth plane holding it at every pixel, ``(B, 4, H, W)``."""
    if exposure is None:
        return image
    b, _, h, w = image.shape
    return torch.cat((image, exposure.to(image.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)), 1)


def validate_reward_mode(mode: str) -> str:
    if mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {mode!r}")
    return mode


def state_loss(image: torch.Tensor, original: EpisodeInput, weights: LossWeights) -> torch.Tensor:
    """Weighted loss of images alone (no alpha term): the potential that ``"delta"`` rewards lowering."""
    return image_loss(image, original.image, weights, original.blocks, original.exposure)


def head_shares(
    gradient: torch.Tensor, image: torch.Tensor, alpha: torch.Tensor, action_set: ActionSet, weights: LossWeights
) -> torch.Tensor:
    """Each head's share of the drop of a loss, to first order, for the step from ``image`` with ``alpha``
    (before coupling), minus its smoothness charge: ``(B, 3, H, W)``, i.e.
    ``-H*W * alpha_h * C^T(gradient * blend * x(1 - x))_h - smoothness * L_TV share``, where ``gradient`` is
    the loss's sensitivity to the image after the step.

    The step moves channel c by ``blend * x_c (1 - x_c) * coupled alpha_c``; each head's alpha enters the coupled
    alphas linearly, so its share is its alpha times the loss sensitivity the coupling routes to it.
    """
    _, _, h, w = image.shape
    sensitivity = gradient * image * (1.0 - image) * action_set.blend
    share = action_set.couple_transpose(sensitivity).mul_(alpha).mul_(-h * w)
    return share - weights.smoothness * smoothness_map(alpha, per_channel=True)


def final_loss_shares(
    images: torch.Tensor, actions: torch.Tensor, action_set: ActionSet, weights: LossWeights,
    exposure: torch.Tensor | None = None,
) -> torch.Tensor:
    """Credit for the loss of an episode's *last* image: each head's share of it, ``(T, B, 3, H, W)``.

    :param images: the states ``(T, B, 3, H, W)`` the actions were taken in; ``images[0]`` is the episode's input.
    :param actions: integer action maps ``(T, B, 3, H, W)``.
    :param exposure: each episode's target brightness ``(B,)``, where the env draws one per episode.
    :return: per step, what each (pixel, head) action did to the final image's loss, to first order (as
        :func:`head_shares` with the final loss's gradient carried back to that step), minus its
        smoothness charge. The curve step is elementwise, so carrying the gradient back is exact (clipping
        aside): ``dx_{t+1}/dx_t = 1 - blend * alpha'_t * (2 x_t - 1)``. Unlike a step's own reward, this
        charges an early brightening with the colour cost it causes at the end.
    """
    original = EpisodeInput.of(images[0], weights, exposure)
    final, _ = action_set.step(images[-1], actions[-1])
    with torch.enable_grad():
        leaf = final.detach().requires_grad_(True)
        (adjoint,) = torch.autograd.grad(state_loss(leaf, original, weights).sum(), leaf)
    shares = torch.empty_like(images)
    for t in reversed(range(images.shape[0])):
        x, alpha = images[t], action_set.alpha(actions[t])
        shares[t] = head_shares(adjoint, x, alpha, action_set, weights)
        adjoint = adjoint * (1.0 - action_set.blend * action_set.couple(alpha) * (2.0 * x - 1.0))
    return shares


def transition(
    image: torch.Tensor,
    original: EpisodeInput,
    actions: torch.Tensor,
    action_set: ActionSet,
    weights: LossWeights,
    reward_mode: str | None,
    previous_loss: torch.Tensor,
) -> Transition:
    """Apply an action map to a batch of images and score the result.

    :param image: current images ``(B, 3, H, W)`` in [0, 1].
    :param original: the episode's input (spatial consistency and the ratio colour term refer to it).
    :param actions: integer action maps ``(B, 3, H, W)``; channel c acts on RGB channel c.
    :param reward_mode: one of :data:`REWARD_MODES`, or ``None`` for no reward (``reward_map`` and ``reward``
        are then ``None``: for a learner that relabels the rewards itself).
    :param previous_loss: ``state_loss`` of ``image`` (``(B,)``), for ``reward_mode="delta"``.
    :return: the :class:`Transition`. Reward maps: ``"paper"`` is minus the released total loss
        (including ``smoothness * L_TV(alpha)``) at every pixel; ``"delta"`` is the drop of the image's loss
        minus the smoothness charge, at every pixel; ``"pixel"`` is minus the local loss map;
        ``"pixel-delta"`` is each pixel's share of the drop of the image's loss (``-H*W * dL/dx . (x' - x)``
        summed over channels, the gradient taken at the step's midpoint: a difference reward, what this
        pixel's own change did to the loss; the shares add up to the drop, exactly for a quadratic loss),
        minus the local smoothness charge; ``"head-delta"`` splits that share among the three heads, ``(B, 3, H,
        W)``: what each head's own alpha did (through the coupling too; the step is linear in alpha), so that
        every (pixel, head) agent is credited with its own effect. The maps add up to ``"pixel-delta"``'s.
    """
    new, alpha = action_set.step(image, actions)
    if reward_mode in DIFFERENCE_MODES:
        with torch.enable_grad():
            # The gradient at the midpoint of the step makes the shares add up to the exact drop for a
            # quadratic loss (exposure and spatial terms are): at either end they would be biased.
            leaf = ((image + new) * 0.5).detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(state_loss(leaf, original, weights).sum(), leaf)
    terms = loss_terms(new, original.image, alpha, weights, original.blocks, original.exposure)
    new_loss = weighted_sum(terms, weights, NO_REFERENCE_TERMS)
    b, _, h, w = new.shape
    if reward_mode is None:
        reward_map = reward = None
    elif reward_mode == "pixel-delta":
        share = (gradient * (new - image)).sum(1).mul_(-h * w)
        reward_map = share - weights.smoothness * smoothness_map(alpha)[:, 0]
        reward = reward_map.mean((1, 2))
    elif reward_mode == "head-delta":
        reward_map = head_shares(gradient, image, alpha, action_set, weights)
        reward = reward_map.sum(1).mean((1, 2))
    elif reward_mode == "pixel":
        reward_map = -loss_map(new, original.image, alpha, weights, original.blocks, original.exposure)
        reward = reward_map.mean((1, 2))
    else:
        if reward_mode == "paper":
            reward = -weighted_sum(terms, weights, LOSS_TERMS)
        else:
            reward = previous_loss - new_loss - weights.smoothness * terms["smoothness"]
        reward_map = reward.view(b, 1, 1).expand(b, h, w)
    return Transition(new, alpha, reward_map, reward, terms, new_loss)
