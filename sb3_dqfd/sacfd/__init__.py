"""SACfD: SAC from demonstrations (DDPGfD recipe, Vecerik et al. 2017; Q-filtered behaviour cloning, Nair et al. 2018)."""

from sb3_dqfd.sacfd.policies import CnnPolicy, EnsembleCritic, MlpPolicy, MultiInputPolicy, SACfDPolicy
from sb3_dqfd.sacfd.sacfd import RLPD_HYPERPARAMS, SACfD

__all__ = ["RLPD_HYPERPARAMS", "CnnPolicy", "EnsembleCritic", "MlpPolicy", "MultiInputPolicy", "SACfD", "SACfDPolicy"]
