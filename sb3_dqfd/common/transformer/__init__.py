"""Shared pieces of the transformer algorithms: the actor-critic policy, context windows, their rollout buffer, sample
tuples and the on-policy base class of TransformerA2C and TransformerPPO."""
