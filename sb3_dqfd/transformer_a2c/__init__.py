from sb3_dqfd.transformer_a2c.policies import MlpPolicy, TransformerActorCriticPolicy
from sb3_dqfd.transformer_a2c.transformer_a2c import TransformerA2C

__all__ = ["MlpPolicy", "TransformerA2C", "TransformerActorCriticPolicy"]
