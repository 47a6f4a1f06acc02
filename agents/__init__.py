"""rellie agents: the fully convolutional SB3 policy, pixel-wise A2C/PPO, checkpoints, enhancement."""
from agents.buffers import PixelRolloutBuffer
from agents.checkpoints import load_default, load_policy, save_weights
from agents.distributions import PixelCategoricalDistribution
from agents.official import load_official_rellie
from agents.pixel_a2c import PixelA2C
from agents.pixel_ppo import PixelPPO
from agents.policies import PixelActorCriticPolicy
from agents.wrappers import FlattenActionMap

__all__ = [
    "FlattenActionMap",
    "PixelA2C",
    "PixelActorCriticPolicy",
    "PixelCategoricalDistribution",
    "PixelPPO",
    "PixelRolloutBuffer",
    "load_default",
    "load_official_rellie",
    "load_policy",
    "save_weights",
]
