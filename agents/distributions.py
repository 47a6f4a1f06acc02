"""A categorical distribution per pixel and per head, held as one tensor of logits."""
from __future__ import annotations

import torch
from stable_baselines3.common.distributions import Distribution


class PixelCategoricalDistribution(Distribution):
    """Independent categoricals over an action map: logits ``(B, heads, n_actions, H, W)``.

    The ``*_map`` methods give per-pixel values, which the pixel-wise algorithms use; :meth:`log_prob` and
    :meth:`entropy` sum them over the image, ``(B,)``, as SB3's stock
    algorithms expect of a joint action.

    :param n_actions: actions per head.
    """

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.log_probs: torch.Tensor | None = None

    def proba_distribution_net(self, *args, **kwargs):
        raise NotImplementedError("the policy builds its own convolutional heads (PixelActorCriticPolicy)")

    def proba_distribution(self, action_logits: torch.Tensor) -> PixelCategoricalDistribution:
        self.log_probs = torch.log_softmax(action_logits, dim=2)
        return self

    @property
    def probs(self) -> torch.Tensor:
        return self.log_probs.exp()

    def log_prob_map(self, actions: torch.Tensor, per_head: bool = False) -> torch.Tensor:
        """Log-probability of an action map ``(B, heads, H, W)``: per head, ``(B, heads, H, W)``, or summed
        over the heads, ``(B, 1, H, W)``."""
        log_prob = self.log_probs.gather(2, actions.long().unsqueeze(2)).squeeze(2)
        return log_prob if per_head else log_prob.sum(1, keepdim=True)

    def entropy_map(self) -> torch.Tensor:
        """Entropy per pixel, summed over heads: ``(B, H, W)``."""
        return -(self.probs * self.log_probs).sum((1, 2))

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.log_prob_map(actions.view(-1, *self.log_probs.shape[1:2], *self.log_probs.shape[3:])).sum((1, 2, 3))

    def entropy(self) -> torch.Tensor:
        return self.entropy_map().sum((1, 2))

    def sample(self, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """An action map ``(B, heads, H, W)``; with ``generators`` (one per image), image b's draws come from
        ``generators[b]`` alone, so they do not depend on the other images of the batch (or on how images
        are split over processes)."""
        # Inverse CDF: one uniform per pixel and head instead of one Gumbel per action.
        cdf = self.probs.cumsum(2)
        shape = cdf[:, :, :1].shape
        if generators is None:
            u = torch.rand(shape, device=cdf.device, dtype=cdf.dtype)
        else:
            u = torch.stack([torch.rand(shape[1:], generator=g, device=cdf.device, dtype=cdf.dtype) for g in generators])
        return (cdf < u * cdf[:, :, -1:]).sum(2).clamp_(max=self.n_actions - 1)

    def mode(self) -> torch.Tensor:
        # max(dim).indices is the first maximal index, as argmax, and several times faster on CPU here.
        return self.log_probs.max(2).indices

    def mean_action(self, values: torch.Tensor) -> torch.Tensor:
        """Per pixel and head, the action whose value is nearest to the expected value (``values``: one per
        action, e.g. the curve strengths): the deterministic read-out of a mixed policy."""
        expected = self.expected(values)
        return (values.view(1, 1, -1, 1, 1) - expected.unsqueeze(2)).abs().min(2).indices

    def expected(self, values: torch.Tensor) -> torch.Tensor:
        """Expectation of per-action ``values`` (e.g. the curve strengths) per pixel and head: ``(B, heads, H, W)``."""
        return torch.einsum("bkahw,a->bkhw", self.probs, values)

    def actions_from_params(self, action_logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)
