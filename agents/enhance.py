"""Enhancement with a trained policy: greedy steps along the curve, scoring, and the constant baseline."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from agents.policies import PixelActorCriticPolicy
from rellie_env.curves import ActionSet
from rellie_env.images import Augmentation, builtin_images
from rellie_env.losses import LossWeights, image_loss


@torch.inference_mode()
def greedy_rollout(
    policy: PixelActorCriticPolicy, images: torch.Tensor, steps: int = 6, action_set: ActionSet = ActionSet()
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Apply the policy's most likely action map ``steps`` times to ``(B, 3, H, W)`` images.

    :return: the final images and the alpha maps (before coupling) of each step.
    """
    x, alphas = images, []
    for _ in range(steps):
        x, alpha = action_set.step(x, policy.distribution(x).mode())
        alphas.append(alpha)
    return x, alphas


def heldout_crops(n: int = 16, size: int = 96, seed: int = 0) -> torch.Tensor:
    """``n`` random crops (no flips or rotations) of the held-aside built-in photos, ``(n, 3, size, size)``."""
    source = builtin_images("test")
    rng = np.random.default_rng(seed)
    crop = Augmentation(size, flip_prob=0.0, rotate_prob=0.0)
    crops = [crop(rng, source.images[i % len(source)])[0] for i in range(n)]
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2))


def policy_loss_on(
    policy: PixelActorCriticPolicy, images: torch.Tensor, steps: int = 6, weights: LossWeights = LossWeights()
) -> float:
    """Mean non-reference loss (spatial + exposure + colour) of the greedy policy's results."""
    final, _ = greedy_rollout(policy, images, steps)
    return float(image_loss(final, images, weights).mean())


@torch.inference_mode()
def best_constant_policy(
    images: torch.Tensor,
    steps: int = 6,
    action_set: ActionSet = ActionSet(),
    weights: LossWeights = LossWeights(),
    per_channel: bool = True,
) -> tuple[tuple[int, int, int], float]:
    """The best constant policy: the same action triple at every pixel and step, best over the action set.

    An exhaustive search of all ``n_actions**3`` triples, made fast by two facts: a channel's result depends
    only on its own action and the lead channel's, so ``n_actions`` batched runs give every channel of every
    triple; and when the image sides are multiples of the spatial block (and the exposure patch is too), the
    loss of the block-averaged images with a block of 1 equals the loss of the full images, so the triples
    are scored on images ``block**2`` times smaller.

    :param images: ``(N, 3, H, W)`` inputs.
    :param per_channel: search all triples (else only equal actions on the three channels).
    :return: the best triple (RGB) and its mean non-reference loss on ``images``.
    """
    n, lead = action_set.n_actions, action_set.lead_channel
    count, _, h, w = images.shape
    block = weights.spatial_block
    f = block if h % block == 0 and w % block == 0 and weights.exposure_patch % block == 0 else 1
    scaled = replace(weights, spatial_block=block // f, exposure_patch=weights.exposure_patch // f)
    original = F.avg_pool2d(images, f)

    def run(own: torch.Tensor) -> torch.Tensor:
        """Pooled results ``(n, N, 3, h, w)`` of the n constant triples ``own`` ``(n, 3)``."""
        x = images.repeat(n, 1, 1, 1)
        actions = own.to(torch.uint8).view(n, 1, 3, 1, 1).expand(n, count, 3, h, w).reshape(x.shape)
        for _ in range(steps):
            x, _ = action_set.step(x, actions)
        return F.avg_pool2d(x, f).view(n, count, 3, *original.shape[2:])

    equal = torch.arange(n).view(n, 1).expand(n, 3)
    lead_c = 2 if lead is None else lead
    o1, o2 = [c for c in range(3) if c != lead_c]
    uncoupled = run(equal) if lead is None else None
    best, best_loss = (0, 0, 0), float("inf")
    for j in range(n):  # the lead channel's action
        if lead is None:
            results, lead_channel = uncoupled, uncoupled[j, :, lead_c]
        else:
            own = equal.clone()
            own[:, lead_c] = j
            results = run(own)  # results[i]: non-lead channels with own action i, lead action j
            lead_channel = results[0, :, lead_c]
        candidates = torch.arange(n) if per_channel else torch.tensor([j])
        for k in candidates.tolist():  # the second channel's action; the first varies in a batch
            m = len(candidates)
            x = torch.empty(m, count, 3, *original.shape[2:])
            x[:, :, o1] = results[candidates, :, o1]
            x[:, :, o2] = results[k, :, o2]
            x[:, :, lead_c] = lead_channel
            losses = image_loss(x.flatten(0, 1), original.repeat(m, 1, 1, 1), scaled).view(m, count).mean(1)
            i = int(losses.argmin())
            if float(losses[i]) < best_loss:
                triple = [0, 0, 0]
                triple[o1], triple[o2], triple[lead_c] = int(candidates[i]), k, j
                best, best_loss = tuple(triple), float(losses[i])
    return best, best_loss
