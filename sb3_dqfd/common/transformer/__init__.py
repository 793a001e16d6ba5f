"""Shared pieces of the transformer actor-critic: context windows, their rollout buffer and sample tuples."""
