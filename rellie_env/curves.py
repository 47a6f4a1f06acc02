"""The action set and the light-enhancement curve of ReLLIE, in torch.

Every pixel agent picks, per colour channel, one of ``n_actions`` curve strengths
``alpha = (a - offset) * scale``; the image then moves one step along the quadratic curve
``LE(x) = x + alpha * x * (1 - x)``. These functions are the only implementation of that step:
the single environment, the batched environment and evaluation all call them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ActionSet:
    """Discrete curve strengths and how one step applies them (defaults: as released).

    :param n_actions: number of discrete actions per channel (27 as released).
    :param offset: action index of alpha = 0 (6 as released, so alpha spans -0.30 ... 1.00).
    :param scale: alpha step between consecutive actions (1/20 as released).
    :param lead_channel: the channel whose alpha the other two follow, or ``None`` for no coupling.
        The released model saw OpenCV BGR images and coupled to channel 0 = blue, which is RGB channel 2.
    :param lead_weight: weight of the lead channel's alpha in the other channels' alpha (0.9 as released).
    :param blend: weight of the curve step against the previous image (0.8 as released).
    """

    n_actions: int = 27
    offset: int = 6
    scale: float = 1.0 / 20.0
    lead_channel: int | None = 2
    lead_weight: float = 0.9
    blend: float = 0.8

    def __post_init__(self) -> None:
        if self.n_actions < 1:
            raise ValueError(f"n_actions must be positive, got {self.n_actions}")
        if self.lead_channel not in (None, 0, 1, 2):
            raise ValueError(f"lead_channel must be 0, 1, 2 or None, got {self.lead_channel}")
        if not 0.0 <= self.lead_weight <= 1.0 or not 0.0 <= self.blend <= 1.0:
            raise ValueError("lead_weight and blend must lie in [0, 1]")
        values = self.alpha_values()
        if not (-1.0 <= float(values.min()) and float(values.max()) <= 1.0):
            raise ValueError("every alpha must lie in [-1, 1] so that the curve keeps images in [0, 1]")

    def alpha_values(self) -> torch.Tensor:
        """The ``n_actions`` curve strengths, as a float32 tensor."""
        return (torch.arange(self.n_actions, dtype=torch.float32) - self.offset) * self.scale

    def action_of(self, alpha: float) -> int:
        """The action index whose curve strength is nearest to ``alpha``."""
        return int(torch.argmin((self.alpha_values() - alpha).abs()))

    def alpha(self, actions: torch.Tensor) -> torch.Tensor:
        """Curve strengths of an integer action map ``(..., 3, H, W)``, as float32."""
        return actions.to(torch.float32).sub_(self.offset).mul_(self.scale)

    def couple(self, alpha: torch.Tensor) -> torch.Tensor:
        """Released channel coupling: ``alpha'_c = (1 - w) * alpha_c + w * alpha_lead`` for c != lead."""
        if self.lead_channel is None:
            return alpha
        lead = alpha[..., self.lead_channel : self.lead_channel + 1, :, :]
        coupled = (alpha * (1.0 - self.lead_weight)).add_(lead, alpha=self.lead_weight)
        # The lead channel keeps its own alpha exactly (no rounding through the blend above).
        coupled[..., self.lead_channel, :, :] = alpha[..., self.lead_channel, :, :]
        return coupled

    def couple_transpose(self, sensitivity: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`couple`: from ``(..., 3, H, W)`` sensitivities to the coupled alphas, the
        sensitivities to each head's own alpha (the lead head collects ``lead_weight`` of the others')."""
        if self.lead_channel is None:
            return sensitivity
        out = sensitivity * (1.0 - self.lead_weight)
        others = [c for c in range(3) if c != self.lead_channel]
        out[..., self.lead_channel, :, :] = sensitivity[..., self.lead_channel, :, :] + self.lead_weight * sensitivity[
            ..., others, :, :
        ].sum(-3)
        return out

    def step(self, image: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One environment step: returns ``(new_image, alpha)`` where ``alpha`` is before coupling."""
        alpha = self.alpha(actions)
        return curve_step(image, self.couple(alpha), self.blend), alpha


def apply_curve(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The light-enhancement curve ``LE(x) = x + alpha * x * (1 - x)`` (Zero-DCE, ReLLIE)."""
    return x + alpha * x * (1.0 - x)


def curve_step(x: torch.Tensor, alpha: torch.Tensor, blend: float = 0.8) -> torch.Tensor:
    """Released step ``blend * LE(x) + (1 - blend) * x``, clipped to [0, 1] against rounding.

    Computed in place as ``x - blend * alpha * (x^2 - x)`` (the same value): one temporary instead of
    six, since the batched environment spends much of a step here.
    """
    out = x * x
    return out.sub_(x).mul_(alpha).mul_(-blend).add_(x).clamp_(0.0, 1.0)
