"""TD3fD: TD3 from demonstrations (DDPGfD recipe, Vecerik et al. 2017; Q-filtered behaviour cloning, Nair et al. 2018)."""

from sb3_dqfd.td3fd.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, TD3Policy
from sb3_dqfd.td3fd.td3fd import TD3fD

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TD3Policy", "TD3fD"]
