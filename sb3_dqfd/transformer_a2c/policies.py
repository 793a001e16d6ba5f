"""Policy aliases of TransformerA2C (the transformer actor-critic itself lives in ``sb3_dqfd.common.transformer``)."""

from sb3_dqfd.common.transformer.policies import (
    MultiInputTransformerActorCriticPolicy,
    TransformerActorCriticCnnPolicy,
    TransformerActorCriticPolicy,
)

MlpPolicy = TransformerActorCriticPolicy
CnnPolicy = TransformerActorCriticCnnPolicy
MultiInputPolicy = MultiInputTransformerActorCriticPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TransformerActorCriticPolicy"]
