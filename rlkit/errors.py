"""User-facing errors.

Everything a user can get wrong (an unknown algorithm, a malformed dataset, a corrupt checkpoint, a
shape mismatch) raises :class:`RlkitError` with a one-line message that names the problem and the fix.
The CLI prints that line to stderr and exits with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations


class RlkitError(Exception):
    """A problem with the user's input, reported as one clear line (CLI exit code 2)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(RlkitError):
    """Unknown config choice, unknown key, or a bad value."""


class DatasetError(RlkitError):
    """A dataset file is missing, unreachable, or does not follow the expected schema."""


class CheckpointError(RlkitError):
    """A checkpoint is corrupt, truncated, or belongs to a different configuration."""


class EnvError(RlkitError):
    """An environment name is unknown or its simulator is not installed."""


def choices_hint(choices) -> str:
    """Format a list of valid choices for an error message."""
    choices = sorted(str(c) for c in choices)
    if len(choices) > 30:
        return ", ".join(choices[:30]) + f", ... ({len(choices)} in all; `rlkit list` shows them)"
    return ", ".join(choices)
