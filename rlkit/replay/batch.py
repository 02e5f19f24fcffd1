"""The minibatch type every algorithm's ``update(batch)`` receives.

A :class:`Batch` is a plain ``dict`` of ``str -> torch.Tensor`` with attribute access, so that loss code
reads like the paper (``batch.reward + gamma * (1 - batch.terminated) * q_next``) while staying a dict
(``batch.keys()``, ``**batch``, ``torch.save``).

Keys produced by :meth:`rlkit.replay.ReplayBuffer.sample`:

* one entry per storage column (``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``,
  ``truncated``, ... as declared), float columns as ``float32``, bool columns as ``float32`` 0/1, integer
  columns as ``int64`` (``uint8`` pixels stay ``uint8``: the network scales them on the device);
* ``indices`` (``int64``): the storage rows sampled, to be handed back to ``update_priorities``;
* ``weights`` (``float32``): importance weights of the sampler, ones when it has none;
* ``discount`` (``float32``), only with n-step returns: ``gamma**m * (1 - terminated)`` of the last step.

Besides the columns a batch has one typed field, :attr:`Batch.policy_batch`: the second batch that
decoupled resampling (OPER's ODPR variant) draws for the policy terms, or None.
"""

from __future__ import annotations

import torch


class Batch(dict):
    """``str -> torch.Tensor`` mapping with attribute access (``batch.obs is batch["obs"]``)."""

    __slots__ = ("_policy_batch",)

    def __init__(self, *args, policy_batch: Batch | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_policy_batch", policy_batch)

    @property
    def policy_batch(self) -> Batch | None:
        """The decoupled policy-term batch (prioritized) when the regime drew one, else None."""
        return self._policy_batch

    @policy_batch.setter
    def policy_batch(self, value: Batch | None) -> None:
        object.__setattr__(self, "_policy_batch", value)

    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"batch has no column '{name}'; it holds: {', '.join(sorted(self))}"
            ) from None

    def __setattr__(self, name: str, value: torch.Tensor) -> None:
        if name in ("policy_batch", "_policy_batch"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        """A new batch with every tensor moved to ``device`` (tensors already there are not copied)."""
        policy = None if self.policy_batch is None else self.policy_batch.to(device, non_blocking)
        return Batch({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()}, policy_batch=policy)

    @property
    def batch_size(self) -> int:
        """Number of samples (first dimension of ``indices``)."""
        return int(self["indices"].shape[0])

    def __repr__(self) -> str:
        cols = ", ".join(
            f"{k}: {tuple(v.shape)} {str(v.dtype).replace('torch.', '')}" for k, v in self.items()
        )
        return f"Batch({cols})"
