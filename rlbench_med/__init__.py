"""rlbench-med: compare RL advantage estimators for clinical multimodal diagnosis."""

__version__ = "0.1.0"
