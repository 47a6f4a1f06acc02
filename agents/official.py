"""Load the released ReLLIE weights (Chainer ``save_npz``) into :class:`PixelActorCriticPolicy`.

The released model saw OpenCV BGR images, and its head k acted on BGR channel k (head 0, blue, leading
the others). Our environment is RGB with the lead channel blue = 2, so the first conv's input channels
are reversed and our head c takes the released head 2 - c: the loaded policy acts on RGB exactly as the
original acted on BGR.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from gymnasium import spaces

from agents.policies import PixelActorCriticPolicy

# Released head order: head 0, 1, 2 acted on BGR channels 0, 1, 2.
RELEASED_HEADS = ("conv7_r_pi", "conv7_g_pi", "conv7_b_pi")


def official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Map the released ``model.npz`` to our policy's parameter names (RGB input and heads)."""
    try:
        npz = np.load(path)
        w = {k: torch.from_numpy(np.ascontiguousarray(npz[k])) for k in npz.files}
    except Exception as exc:  # np.load raises many types on a bad file
        raise ValueError(f"{os.fspath(path)!r} is not a readable Chainer .npz of the ReLLIE model: {exc}") from exc

    def conv(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        return w[f"{prefix}/W"], w[f"{prefix}/b"]

    try:
        out: dict[str, torch.Tensor] = {}
        weight, bias = conv("conv1")
        out["features_extractor.net.0.weight"], out["features_extractor.net.0.bias"] = weight.flip(1), bias
        for i, name in enumerate(("diconv2", "diconv3", "diconv4"), start=1):
            out[f"features_extractor.net.{2 * i}.weight"], out[f"features_extractor.net.{2 * i}.bias"] = conv(f"{name}/diconv")
        for branch, suffix in (("policy_net", "pi"), ("value_net", "V")):
            for i, name in enumerate(("diconv5", "diconv6")):
                key = f"mlp_extractor.{branch}.{2 * i}"
                out[f"{key}.weight"], out[f"{key}.bias"] = conv(f"{name}_{suffix}/diconv")
        heads = [conv(f"{name}/model") for name in RELEASED_HEADS][::-1]  # our head c = released head 2 - c
        out["action_net.conv.weight"] = torch.cat([h[0] for h in heads])
        out["action_net.conv.bias"] = torch.cat([h[1] for h in heads])
        out["value_net.weight"], out["value_net.bias"] = conv("conv7_V")
    except KeyError as exc:
        raise ValueError(f"{os.fspath(path)!r} lacks the ReLLIE parameter {exc}") from exc
    if not all(torch.isfinite(t).all() for t in out.values()):
        raise ValueError(f"{os.fspath(path)!r} holds non-finite weights")
    return out


def load_official_rellie(
    path: str | os.PathLike, size: int = 70, device: str | torch.device = "cpu"
) -> PixelActorCriticPolicy:
    """The released ReLLIE agent as a :class:`PixelActorCriticPolicy` for our RGB environment.

    :param path: the released ``model.npz`` (e.g. ``../shared/reference/rellie_official_model.npz``).
    :param size: image side of the observation space it is built for; being convolutional, the policy acts
        on any size through :meth:`~PixelActorCriticPolicy.act_pixels` and :func:`agents.enhance.enhance`.
    """
    state = official_state_dict(path)
    policy = PixelActorCriticPolicy(
        spaces.Box(0.0, 1.0, (3, size, size), np.float32),
        spaces.MultiDiscrete(np.full((3, size, size), 27)),
        lambda _: 0.0,
        width=int(state["features_extractor.net.0.weight"].shape[0]),
        exposure=0.6,  # the released training's exposure level
    )
    policy.load_state_dict(state, strict=False)  # the alpha_values buffer is the action set's
    return policy.to(device).eval()
