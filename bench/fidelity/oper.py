"""rlkit's OPER priorities against sail-sg/OPER (``--ref oper=PATH``, a clone with its branches).

* ``oper_a``: OPER-A's value fitting and priorities.  rlkit's ``_ValueFitter`` (double V by TD, fresh Adam
  and cosine learning rate per round, Polyak) against the ``main`` branch's ``DoubleV_Advantage.train`` on
  the same normalised states, the same initial weights and the same injected index batches (the
  reference's ``bc_sampler`` returns them), ``updates`` steps of one round whose schedule spans the
  largest update count; then, on the fitted V of each side, the advantages of every row, one OPER-A round of
  weights (``main.py``'s ``padv`` update) and the normalised probabilities (``replace_weights`` of the
  ``td3`` and ``iql`` branches, sigma 2 and 5, floor 0.1).  The ``onestep`` branch normalises inline in
  its ``train.py`` with the ``td3`` branch's text; it is not importable without running the script.
* ``oper_r``: the return-based probabilities of the ``td3`` branch (``ReplayBuffer.convert_D4RL``) and the
  ``iql`` branch (``dataset_utils.Dataset``), MuJoCo (``p_base`` 0) and AntMaze (``p_base`` 0.2).

Stubs: ``wandb`` (logging), ``symbol`` (an unused import removed from Python 3.10), and, for the ``iql``
branch's ``dataset_utils``, ``d4rl``/``gym`` (its D4RL loader, not called).  The reference builds its
tensors with ``torch.FloatTensor``; its ``utils`` module sees a ``torch`` whose ``FloatTensor`` keeps
float64, so both sides run in float64.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.fidelity.core import Adapter, Case, branch_tree, default_dtype, git_commit, import_reference

N_ROWS, OBS_DIM, ACT_DIM, BATCH = 240, 5, 2, 32


def synthetic_dataset(seed: int = 0):
    """A small D4RL-shaped dataset with episodes of varied length and return (timeouts and terminals)."""
    from rlkit.data import Dataset

    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(N_ROWS, OBS_DIM))
    next_obs = obs + 0.1 * rng.normal(size=obs.shape)
    lengths = rng.integers(10, 40, size=N_ROWS)
    ends = np.cumsum(lengths)
    ends = ends[ends < N_ROWS] - 1
    terminals = np.zeros(N_ROWS, bool)
    timeouts = np.zeros(N_ROWS, bool)
    for j, e in enumerate(ends):
        (terminals if j % 3 == 0 else timeouts)[e] = True
    for i in range(N_ROWS - 1):  # next_obs continues into the next row inside an episode
        if not (terminals[i] or timeouts[i]):
            next_obs[i] = obs[i + 1]
    rewards = rng.normal(size=N_ROWS) + np.repeat(np.arange(len(ends) + 1), np.diff([0, *(ends + 1), N_ROWS]))
    return Dataset(observations=obs.astype(np.float32), actions=rng.uniform(-1, 1, (N_ROWS, ACT_DIM)).astype(
        np.float32), rewards=rewards.astype(np.float32), terminals=terminals, timeouts=timeouts,
        next_observations=next_obs.astype(np.float32), provenance={"id": "synthetic"})


def d4rl_dict(ds) -> dict[str, np.ndarray]:
    return {"observations": ds.observations.astype(np.float64), "actions": ds.actions.astype(np.float64),
            "next_observations": ds.next_observations.astype(np.float64),
            "rewards": ds.rewards.astype(np.float64), "terminals": ds.terminals.astype(np.float64)}


def float64_torch() -> types.ModuleType:
    """``torch`` as the reference's ``utils`` sees it: ``FloatTensor`` builds float64 tensors."""
    import torch

    proxy = types.ModuleType("torch")
    proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    proxy.FloatTensor = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return proxy


class _Indices:
    """The reference's ``bc_sampler``: returns the injected batch of row indices."""

    def __init__(self) -> None:
        self.idx = np.zeros(BATCH, dtype=np.int64)

    def sample(self) -> np.ndarray:
        return self.idx


class OPERAdapter(Adapter):
    name = "oper"
    reference = "sail-sg/OPER"

    def commit(self) -> str:
        return ",".join(f"{b}:{git_commit(self.path, f'origin/{b}')[:12]}" for b in ("main", "td3", "iql"))

    def cases(self) -> list[Case]:
        return [Case("oper_a", note="value fitting (main branch) + priorities (td3/iql branches)"),
                Case("oper_r", options={"families": ("mujoco", "antmaze")})]

    # --------------------------------------------------------------------------------------------- build
    def build(self, case: Case) -> None:
        import torch

        self.case = case
        self.dataset = synthetic_dataset()
        self.steps_total = 50
        stubs = ("wandb", "symbol")
        self.trees = {b: branch_tree(self.path, b) for b in ("main", "td3", "iql")}
        self.ref_td3_utils = import_reference(self.trees["td3"], "utils", stubs=stubs)
        self.ref_iql_data = import_reference(self.trees["iql"], "dataset_utils", stubs=(*stubs, "d4rl", "gym"))
        if case.method != "oper_a":
            return
        from algorithms.resampling.oper import _ValueFitter

        self.ref_utils = import_reference(self.trees["main"], "utils", stubs=stubs)
        self.ref_utils.torch = float64_torch()
        self.ref_adv = import_reference(self.trees["main"], "advantage", stubs=stubs, isolate=("utils",))
        with default_dtype(torch.float64):
            torch.manual_seed(0)
            fitter = _ValueFitter(self.dataset, (256, 256), 3e-4, 0.99, 1, 0.005, BATCH, 0.0, "cpu", 0)
            for name in ("obs", "next_obs", "ret", "boot"):
                setattr(fitter, name, getattr(fitter, name).double())
            fitter.start_round(self.steps_total)
            self.fitter = fitter
            buf = self.ref_utils.ReplayBuffer(OBS_DIM, ACT_DIM, BATCH, n_step=1, discount=0.99)
            buf.convert_D4RL(d4rl_dict(self.dataset))
            buf.normalize_states()
            # the same normalised states on both sides (rlkit's statistics are float32: D4RL's dtype)
            buf.state, buf.next_state = fitter.obs.numpy().copy(), fitter.next_obs.numpy().copy()
            self.sampler = buf.bc_sampler = _Indices()
            self.buffer = buf
            self.ref = self.ref_adv.DoubleV_Advantage(OBS_DIM, ACT_DIM, "cosine", self.steps_total, 0.99, 0.005,
                                                      critic_type="doublev", td_type="nstep", adv_type="nstep")
            self.ref.set_replay_buffer(buf)

    def transplant(self) -> None:
        if self.case.method != "oper_a":
            return
        import torch

        with torch.no_grad():
            for net, ref in ((self.fitter.value, self.ref.value), (self.fitter.target, self.ref.value_target)):
                for k, layers in enumerate(((ref.l1, ref.l2, ref.l3), (ref.l4, ref.l5, ref.l6))):
                    for ours, theirs in zip(ensemble_layers(net), layers, strict=True):
                        theirs.weight.copy_(ours.weight[k].T)
                        theirs.bias.copy_(ours.bias[k].reshape(-1))

    def draws(self, step: int) -> dict[str, Any]:
        return {"idx": np.random.default_rng(1000 + step).integers(0, N_ROWS, BATCH), "step": step}

    # --------------------------------------------------------------------------------------------- compare
    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        if self.case.method == "oper_r":
            return self.compare_oper_r() if draws["step"] == 1 else {}
        import torch

        idx = draws["idx"]
        self.sampler.idx = idx
        f = self.fitter
        t_idx = torch.as_tensor(idx)
        with torch.no_grad():
            ours_y = f.ret[t_idx] + f.boot[t_idx] * f.v(f.target, f.next_obs[f.last[t_idx]])
            theirs_y = self.ref.td(self.buffer.sample_by_ind(idx)).squeeze(-1)
        ours_loss = f.step(t_idx)
        info = self.ref.train(self.buffer)
        out = {
            "value_target": (ours_y, theirs_y),
            "value_loss": (ours_loss, info["value_loss"]),
            "lr": (f.opt.param_groups[0]["lr"], info["value_lr"]),
            "grads.value": (self.ensemble_grads(f.value), self.ref_grads(self.ref.value)),
            "params.value": (self.ensemble_params(f.value), self.ref_params(self.ref.value)),
            "params.value_target": (self.ensemble_params(f.target), self.ref_params(self.ref.value_target)),
        }
        if draws["step"] in (1, self.steps_total):
            out.update(self.compare_priorities())
        return out

    def compare_priorities(self) -> dict[str, tuple[Any, Any]]:
        from algorithms.resampling.oper import next_round_weights, normalize_priorities

        ours_adv = self.fitter.advantages()
        theirs_adv, _, _ = self.ref.eval()
        theirs_adv = theirs_adv.reshape(-1)
        n = N_ROWS
        # main.py: padv = adv - adv.min(); weight = weight * padv / padv.sum() * N; renormalised to sum N
        padv = theirs_adv - theirs_adv.min()
        prior = np.random.default_rng(7).uniform(0.5, 1.5, n)
        prior = prior / prior.mean()
        theirs_w = prior * (padv / padv.sum() * n)
        theirs_w = theirs_w / theirs_w.sum() * n
        ours_w = next_round_weights(prior, ours_adv)
        out = {"advantages": (ours_adv, theirs_adv), "round_weights": (ours_w, theirs_w)}
        for std in (2.0, 5.0, 0.5):
            ours_p = normalize_priorities(ours_w, std=std, floor=0.1)
            td3 = self.td3_buffer(reweight=False)
            td3.replace_weights(theirs_w, "linear", std=std, eps=0.1)
            iql = self.iql_dataset()
            iql.replace_weights(theirs_w, "linear", std=std, eps=0.1)
            out[f"probs_sigma{std:g}.td3"] = (ours_p, td3.probs)
            out[f"probs_sigma{std:g}.iql"] = (ours_p, iql.probs)
        return out

    def compare_oper_r(self) -> dict[str, tuple[Any, Any]]:
        from algorithms.resampling.oper import oper_r_priorities

        out = {}
        for family in self.case.options["families"]:
            p_base = 0.2 if family == "antmaze" else 0.0
            ours = oper_r_priorities(self.dataset, env_cfg={"family": family})
            out[f"probs_{family}.td3"] = (ours, self.td3_buffer(base_prob=p_base).probs.reshape(-1))
            out[f"probs_{family}.iql"] = (ours, self.iql_dataset(base_prob=p_base).probs.reshape(-1))
        return out

    # --------------------------------------------------------------------------------------------- helpers
    def td3_buffer(self, base_prob: float = 0.0, reweight: bool = False):
        buf = self.ref_td3_utils.ReplayBuffer(OBS_DIM, ACT_DIM, BATCH, base_prob=base_prob, resample=True,
                                              reweight=reweight, n_step=1, discount=0.99)
        buf.convert_D4RL(d4rl_dict(self.dataset))
        return buf

    def iql_dataset(self, base_prob: float = 0.0):
        """The ``iql`` branch's ``Dataset`` on the same arrays (what its ``D4RLDataset`` builds, minus d4rl)."""
        d = d4rl_dict(self.dataset)
        dones = np.zeros(N_ROWS)
        for i in range(N_ROWS - 1):  # D4RLDataset.__init__'s episode ends
            dones[i] = float(np.linalg.norm(d["observations"][i + 1] - d["next_observations"][i]) > 1e-6
                             or d["terminals"][i] == 1.0)
        dones[-1] = 1
        return self.ref_iql_data.Dataset(d["observations"], d["actions"], d["rewards"], 1.0 - d["terminals"], dones,
                                         d["next_observations"], size=N_ROWS, batch_size=BATCH,
                                         sample="return-balance", reweight=False, base_prob=base_prob, pb=False)

    @staticmethod
    def ensemble_params(net) -> dict[str, Any]:
        out = {}
        for k in range(2):
            for j, layer in enumerate(ensemble_layers(net)):
                out[f"v{k + 1}.l{j}.weight"] = layer.weight[k].T.detach().clone()
                out[f"v{k + 1}.l{j}.bias"] = layer.bias[k].reshape(-1).detach().clone()
        return out

    @staticmethod
    def ensemble_grads(net) -> dict[str, Any]:
        out = {}
        for k in range(2):
            for j, layer in enumerate(ensemble_layers(net)):
                out[f"v{k + 1}.l{j}.weight"] = layer.weight.grad[k].T.clone()
                out[f"v{k + 1}.l{j}.bias"] = layer.bias.grad[k].reshape(-1).clone()
        return out

    @staticmethod
    def ref_params(net, grad: bool = False) -> dict[str, Any]:
        out = {}
        for k, layers in enumerate(((net.l1, net.l2, net.l3), (net.l4, net.l5, net.l6))):
            for j, layer in enumerate(layers):
                w, b = (layer.weight.grad, layer.bias.grad) if grad else (layer.weight, layer.bias)
                out[f"v{k + 1}.l{j}.weight"] = w.detach().clone()
                out[f"v{k + 1}.l{j}.bias"] = b.detach().clone()
        return out

    def ref_grads(self, net) -> dict[str, Any]:
        return self.ref_params(net, grad=True)


def ensemble_layers(net) -> list[Any]:
    """The ensemble's linear layers in order (rlkit's ``EnsembleMLP``: weights ``(K, in, out)`` or
    ``(K, out, in)``, found by shape)."""
    from rlkit.nets.mlp import EnsembleLinear

    return [m for m in net.modules() if isinstance(m, EnsembleLinear)]


