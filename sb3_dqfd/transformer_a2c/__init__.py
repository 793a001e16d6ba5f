from sb3_dqfd.transformer_a2c.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, TransformerActorCriticPolicy
from sb3_dqfd.transformer_a2c.transformer_a2c import TransformerA2C

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TransformerA2C", "TransformerActorCriticPolicy"]
