"""rlkit's CIC against the authors' released code (rll-research/cic, ``agent/cic.py`` on its own ``agent/ddpg.py``),
update for update, with the URLB adapter's procedure (:mod:`bench.fidelity.urlb`): same hyperparameters
(``agent/cic.yaml``; widths and batch shrunk on both sides), rlkit's initial parameters copied into the reference,
the same float64 batch (skills uniform in ``[0, 1]^skill_dim`` as CIC's pretraining draws them) and the same noise
draws.  Compared: the kNN entropy reward, the critic's reward and target, the critic and actor losses, the
gradients and the updated parameters of actor, critic, target and the CIC networks.

The reference's ``CIC`` module also builds a ``next_state_net`` that nothing calls (its forward embeds both states
with ``state_net``); rlkit has no such network, so only ``state_net``, ``pred_net`` and ``skill_net`` are paired.
Its ``update`` logs an undefined ``apt_reward`` when ``use_tb`` is on; the harness builds it with logging off and
turns it on only inside ``update_critic``/``update_actor`` (whose metrics carry the losses).
"""

from __future__ import annotations

from typing import Any, ClassVar

from bench.fidelity.urlb import URLBAdapter

_CIC_NETS = [("cic.state_net", "cic.state_net"), ("cic.pred_net", "cic.pred_net"), ("cic.skill_net", "cic.skill_net")]


class CICAdapter(URLBAdapter):
    """CIC (module docstring)."""

    name: ClassVar[str] = "cic"
    reference: ClassVar[str] = "rll-research/cic"
    agents: ClassVar[dict[str, tuple[str, str, dict[str, Any], list[tuple[str, str]], str]]] = {
        "cic": ("agent.cic", "CICAgent", {}, _CIC_NETS, "uniform"),
    }
    reward_methods: ClassVar[dict[str, str | None]] = {"cic": "compute_apt_reward"}
    use_tb: ClassVar[bool] = False
