"""Zero-DCE (Li et al., CVPR 2020), the released ``enhance_net_nopool``: a baseline curve estimator.

A 7-layer, 32-channel fully convolutional net predicts 8 per-pixel, per-channel curve maps ``r1..r8``
(tanh, in [-1, 1]) that are applied in turn as ``x <- x + r * (x**2 - x)``. That is the paper's
``LE(x) = x + alpha * x * (1 - x)`` with ``alpha = -r``; it maps [0, 1] into itself.
Source: ``Li-Chongyi/Zero-DCE``, ``Zero-DCE_code/model.py``; weights ``snapshots/Epoch99.pth``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

N_CURVES = 8

M = TypeVar("M", bound=nn.Module)


class ZeroDCE(nn.Module):
    """Zero-DCE's curve estimation network; parameter names match the released state dict (``e_conv1..7``)."""

    def __init__(self, features: int = 32) -> None:
        """:param features: channels of the hidden layers (32 in the released model)."""
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True)

        self.e_conv1 = conv(3, features)
        self.e_conv2 = conv(features, features)
        self.e_conv3 = conv(features, features)
        self.e_conv4 = conv(features, features)
        self.e_conv5 = conv(2 * features, features)
        self.e_conv6 = conv(2 * features, features)
        self.e_conv7 = conv(2 * features, 3 * N_CURVES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Enhance a batch of RGB images.

        :param x: ``(B, 3, H, W)`` RGB in [0, 1].
        :return: the enhanced image ``(B, 3, H, W)`` (the released model's second output, after all 8 curves;
            not clamped, as released: the curve keeps [0, 1] up to float rounding) and the curve maps
            ``(B, 24, H, W)`` in [-1, 1], ``r1..r8`` of 3 channels each, in the order they are applied.
        """
        x1 = F.relu(self.e_conv1(x))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        curves = torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))
        for r in torch.split(curves, 3, dim=1):
            x = x + r * (x * x - x)
        return x, curves


def load_state_dict_file(model: M, path: str | os.PathLike, device: str | torch.device = "cpu") -> M:
    """Load a torch state-dict file into ``model`` (strictly), moved to ``device`` and in eval mode.

    A ``module.`` prefix (left by ``nn.DataParallel``) is stripped from every key.

    :param model: the module to fill.
    :param path: a file written by ``torch.save(state_dict)``; read with ``weights_only=True``.
    :param device: where the model and its weights go.
    :raises ValueError: naming the file when it cannot be read, is not a state dict of tensors, does not
        match the model's keys and shapes, or holds non-finite weights.
    """
    name = os.fspath(path)
    try:
        state = torch.load(name, map_location=device, weights_only=True)
    except Exception as exc:  # pickle, zip and I/O errors alike mean "not a readable weights file"
        raise ValueError(f"cannot read weights file {name!r}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"weights file {name!r} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights file {name!r} does not fit {type(model).__name__}: {exc}") from exc
    # Released checkpoints are known to hold NaN weights (ReLLIE's denoise agent): refuse them here.
    if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
        raise ValueError(f"weights file {name!r} holds non-finite values")
    return model.to(device).eval()


def load_zero_dce(path: str | os.PathLike, device: str | torch.device = "cpu") -> ZeroDCE:
    """Zero-DCE with released weights (e.g. ``zero_dce_epoch99.pth``), in eval mode on ``device``.

    :param path: a state-dict file with keys ``e_conv1.weight`` ... ``e_conv7.bias`` (``module.`` prefix allowed).
    :param device: where the model goes.
    :raises ValueError: naming the file when it is not a readable, compatible state dict.
    """
    return load_state_dict_file(ZeroDCE(), path, device)
