"""TD3fD's policies: SB3's TD3 policies (actor, twin critics and their targets), unchanged."""

from stable_baselines3.td3.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, TD3Policy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "TD3Policy"]
