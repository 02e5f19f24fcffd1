"""Offline base algorithms: BC, TD3+BC, IQL, CQL, AWAC, one-step RL."""
