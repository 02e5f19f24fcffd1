"""rlkit: a reinforcement-learning agent suite on one shared core."""

__version__ = "0.1.0"
