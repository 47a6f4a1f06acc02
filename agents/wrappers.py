"""The stock path: SB3's own A2C / PPO on LowLight-v0 through a flattened action map."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class FlattenActionMap(gym.ActionWrapper):
    """Expose the ``(3, H, W)`` action map as ``MultiDiscrete((3*H*W,))``, which SB3's stock algorithms accept.

    With :class:`agents.policies.PixelActorCriticPolicy` and SB3's ``A2C`` or ``PPO`` the agent is one
    joint action per image trained on the scalar reward (the mean of the reward map): pick it to compare
    with textbook RL or to use an SB3 feature the pixel-wise algorithms lack. It learns far more slowly
    than :class:`agents.PixelA2C` / :class:`agents.PixelPPO`, whose credit assignment is per pixel, and
    SB3's PPO takes the ratio of whole-image probabilities (thousands of summed log-probabilities), which
    overflows unless the policy changes very little per update.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.map_shape = env.action_space.shape
        self.action_space = spaces.MultiDiscrete(np.asarray(env.action_space.nvec).reshape(-1))

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.asarray(action).reshape(self.map_shape)
