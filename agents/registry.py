"""The algorithms ``train_sb3.py --algo`` offers; adding one is one line."""
from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.pixel_a2c import PixelA2C
from agents.pixel_ppo import PixelPPO


@dataclass(frozen=True)
class AlgorithmSpec:
    """:param cls: the SB3 algorithm class. :param pixel_wise: learns from reward maps (else the stock path,
    through :class:`agents.wrappers.FlattenActionMap` and the scalar reward)."""

    cls: type[BaseAlgorithm]
    pixel_wise: bool


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "pixel-a2c": AlgorithmSpec(PixelA2C, pixel_wise=True),
    "pixel-ppo": AlgorithmSpec(PixelPPO, pixel_wise=True),
    "a2c": AlgorithmSpec(A2C, pixel_wise=False),
    "ppo": AlgorithmSpec(PPO, pixel_wise=False),
}
