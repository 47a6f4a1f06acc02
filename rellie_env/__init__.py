"""rellie_env: ReLLIE's low-light enhancement as Gymnasium environments (``LowLight-v0``)."""
from gymnasium.envs.registration import register, registry

from rellie_env.curves import ActionSet, apply_curve, curve_step
from rellie_env.env import LowLightEnv
from rellie_env.losses import LossWeights

if "LowLight-v0" not in registry:
    register(
        id="LowLight-v0",
        entry_point="rellie_env.env:LowLightEnv",
        vector_entry_point="rellie_env.vector:LowLightVectorEnv",
    )

__all__ = ["ActionSet", "LossWeights", "LowLightEnv", "apply_curve", "curve_step"]
