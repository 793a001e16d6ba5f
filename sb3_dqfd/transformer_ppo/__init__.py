from sb3_dqfd.transformer_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_dqfd.transformer_ppo.transformer_ppo import TransformerPPO

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TransformerPPO"]
