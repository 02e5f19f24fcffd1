"""Populations: ``S`` independent copies of one algorithm (seeds ``seed .. seed+S-1``) trained as one stacked
computation in one process.

An algorithm that can join a population writes its update once against a small set of *update operations*
(:class:`UpdateOps`) instead of calling modules, optimizers and the RNG directly:

* ``ops.map(fn, *args)`` -- ``fn`` (a pure function of the algorithm's modules and tensors, and of ``args``:
  tensors, :class:`~rlkit.replay.Batch` es, or None) applied to the arguments;
* ``ops.draw(fn, *args)`` -- the random draws of the update (``fn`` draws from the global torch generator);
* ``ops.step(optimizer, loss, params=None)`` -- ``zero_grad; backward; step`` (:func:`rlkit.optim.step`);
* ``ops.polyak(source, target, tau)`` -- the target-network update; ``ops.schedule(scheduler)`` -- a learning
  rate schedule's step.

A single run uses :data:`DIRECT`, which does exactly that on the algorithm's own tensors.  A population
(:class:`Population`) keeps every parameter, buffer and tensor attribute of its ``S`` members stacked on a
leading axis of size ``S`` and runs the same update code on member 0 (the *template*) with

* ``map`` = ``torch.func.vmap`` over the members of ``torch.func.functional_call`` with the stacked tensors in
  place of the template's (every reduction inside ``fn`` stays per member);
* ``draw`` = ``fn`` once per member, from that member's own torch generator state, outside ``vmap``; the
  draws are stacked.  A member thus draws what its single run draws, in the same order;
* ``step`` = one backward of ``Σ_k L_k`` (members share no parameter, so member ``k`` gets exactly
  ``∇ L_k``) and one step of an optimizer of the same class and settings over the stacked tensors.  Adam,
  AdamW and SGD are elementwise, so this is ``S`` separate optimizers; nothing couples members (an update
  that clipped a global gradient norm would have to clip per member, inside ``map``);
* ``polyak`` on the stacked tensors (elementwise); ``schedule`` steps the template's scheduler and copies
  its learning rates to the stacked optimizer (schedules keyed to the update count are equal across members;
  one keyed to a member's metrics cannot join).

The members' own modules and optimizers are refreshed from the stacked tensors only when something outside
``update`` reads them (evaluation, checkpoints, diagnostics: :meth:`Population.sync`), and the stacked tensors
are gathered from the members when the population starts (fresh or from their checkpoints), so each member's
checkpoint is the one its single run would write.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rlkit.nets import polyak_update
from rlkit.optim import step as optim_step
from rlkit.replay.batch import Batch


class UpdateOps:
    """The operations an update that can run in a population is written against (module docstring); this
    base runs them directly on one algorithm's tensors (:data:`DIRECT`)."""

    def map(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def draw(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
             params: Sequence[torch.Tensor] | None = None) -> None:
        optim_step(optimizer, loss, params)

    def polyak(self, source: nn.Module, target: nn.Module, tau: float) -> None:
        polyak_update(source, target, tau)

    def schedule(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        scheduler.step()


#: the operations of a single run
DIRECT = UpdateOps()


class _Call(nn.Module):
    """Holds the template's modules under their attribute names so that ``functional_call`` can put per-member
    tensors in their place; ``forward`` runs any function with the template's tensor attributes swapped too."""

    def __init__(self, algo: Any, modules: dict[str, nn.Module], tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.algo = [algo]  # a list: not registered as a submodule
        self.tensors = dict(tensors)  # the template's own tensor attributes, restored after every call
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, fn: Callable[..., Any], args: tuple, tensors: dict[str, torch.Tensor]) -> Any:
        algo = self.algo[0]
        try:
            for name in self.tensors:
                setattr(algo, name, tensors[name])
            return fn(*args)
        finally:
            for name, value in self.tensors.items():
                setattr(algo, name, value)


def _batch_to_tree(x: Any) -> Any:
    if isinstance(x, Batch):
        tree = {"columns": dict(x)}
        if x.policy_batch is not None:
            tree["policy_batch"] = _batch_to_tree(x.policy_batch)
        return tree
    return x


def _tree_to_batch(x: Any, was_batch: bool) -> Any:
    if not was_batch:
        return x
    policy = x.get("policy_batch")
    return Batch(x["columns"], policy_batch=None if policy is None else _tree_to_batch(policy, True))


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """One batch whose every column is the members' columns stacked on a new leading axis."""
    first = batches[0]
    policy = None if first.policy_batch is None else stack_batches([b.policy_batch for b in batches])
    return Batch({name: torch.stack([b[name] for b in batches]) for name in first}, policy_batch=policy)


def _is_per_member(value: torch.Tensor, stacked_param: torch.Tensor) -> bool:
    """Whether an optimizer state tensor of a stacked parameter holds one entry per member (moments) rather
    than one shared value (Adam's step count)."""
    return value.shape == stacked_param.shape


class Population(UpdateOps):
    """``S`` members of one algorithm class and configuration trained as one stacked computation (module
    docstring).  ``rng`` holds each member's torch generator state (``torch.get_rng_state()``), which
    :meth:`draw` advances; :meth:`update` takes one batch per member and returns one result per member."""

    def __init__(self, members: Sequence[Any], rng: list[torch.Tensor]) -> None:
        if len(members) != len(rng):
            raise ValueError("one generator state per member")
        self.members = list(members)
        self.rng = rng
        self.template = template = self.members[0]
        self.device = template.device
        self.attrs = attrs = template._stateful_attributes()
        self.module_names = [n for n, v in attrs.items() if isinstance(v, nn.Module)]
        self.tensor_names = [n for n, v in attrs.items() if isinstance(v, torch.Tensor)]
        self.optimizer_names = [n for n, v in attrs.items() if isinstance(v, torch.optim.Optimizer)]
        self.scheduler_names = [n for n, v in attrs.items()
                                if isinstance(v, torch.optim.lr_scheduler.LRScheduler)]
        self.call = _Call(template, {n: attrs[n] for n in self.module_names},
                          {n: attrs[n] for n in self.tensor_names})
        #: key -> the key's tensor in each member (``module.path.name`` or a tensor attribute's name)
        self.keys = list(self._member_tensors(template))
        #: key -> stacked tensor (leaf; requires grad where the member's does)
        self.stacked: dict[str, torch.Tensor] = {}
        #: id(template tensor) -> its stacked tensor (to map optimizer params and backward inputs)
        self.by_id: dict[int, torch.Tensor] = {}
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        self.synced = True
        self.gather()

    # ------------------------------------------------------------------ member <-> stacked
    def _member_tensors(self, member: Any) -> dict[str, torch.Tensor]:
        attrs, out = member._stateful_attributes(), {}
        for name in self.module_names:
            for key, value in [*attrs[name].named_parameters(), *attrs[name].named_buffers()]:
                out[f"{name}.{key}"] = value
        for name in self.tensor_names:
            out[name] = attrs[name]
        return out

    def gather(self) -> None:
        """Stack the members' tensors and optimizer states (at the start, fresh or resumed); the learning rates,
        schedules and counters are the template's (they must be equal in every member)."""
        tensors = [self._member_tensors(m) for m in self.members]
        template = tensors[0]
        self.stacked, self.by_id = {}, {}
        for key in self.keys:
            value = torch.stack([t[key].detach() for t in tensors]).clone()
            self.stacked[key] = value.requires_grad_(template[key].requires_grad)
            self.by_id[id(template[key])] = self.stacked[key]
        self.optimizers = {}
        for name in self.optimizer_names:
            opt = self.attrs[name]
            groups = [{**{k: v for k, v in g.items() if k != "params"},
                       "params": [self.by_id[id(p)] for p in g["params"]]} for g in opt.param_groups]
            stacked = type(opt)(groups, **opt.defaults)
            member_opts = [m._stateful_attributes()[name] for m in self.members]
            for i, group in enumerate(opt.param_groups):
                for j, p in enumerate(group["params"]):
                    states = [o.state.get(o.param_groups[i]["params"][j]) for o in member_opts]
                    if not states[0]:
                        continue
                    sp = self.by_id[id(p)]
                    stacked.state[sp] = {
                        k: (torch.stack([s[k] for s in states]) if isinstance(v, torch.Tensor)
                            and v.shape == p.shape else (v.clone() if isinstance(v, torch.Tensor) else v))
                        for k, v in states[0].items()}
            self.optimizers[id(opt)] = stacked
        self.synced = True

    def sync(self) -> None:
        """Copy the stacked tensors and optimizer states into every member's own tensors and optimizers, and the
        template's counters, learning rates and schedules into the other members (no-op when up to date)."""
        if self.synced:
            return
        with torch.no_grad():
            for k, member in enumerate(self.members):
                tensors = self._member_tensors(member)
                for key in self.keys:
                    tensors[key].copy_(self.stacked[key][k])
        for name in self.optimizer_names:
            stacked = self.optimizers[id(self.attrs[name])]
            for k, member in enumerate(self.members):
                opt = member._stateful_attributes()[name]
                for group, sgroup in zip(opt.param_groups, stacked.param_groups, strict=True):
                    group.update({key: v for key, v in sgroup.items() if key != "params"})
                    for p, sp in zip(group["params"], sgroup["params"], strict=True):
                        state = stacked.state.get(sp)
                        if state:
                            opt.state[p] = {key: (v[k].clone() if isinstance(v, torch.Tensor)
                                                  and _is_per_member(v, sp) else
                                                  (v.clone() if isinstance(v, torch.Tensor) else v))
                                            for key, v in state.items()}
        for member in self.members[1:]:
            for name in self.scheduler_names:
                member._stateful_attributes()[name].load_state_dict(self.attrs[name].state_dict())
            for name in type(self.template).state_attributes:
                setattr(member, name, getattr(self.template, name))
        self.synced = True

    # ------------------------------------------------------------------ the update operations
    def map(self, fn: Callable[..., Any], *args: Any) -> Any:
        was_batch = [isinstance(a, Batch) for a in args]
        trees = [_batch_to_tree(a) for a in args]
        tensor_keys = set(self.tensor_names)

        def member(stacked: dict[str, torch.Tensor], *member_args: Any) -> Any:
            rebuilt = tuple(_tree_to_batch(a, b) for a, b in zip(member_args, was_batch, strict=True))
            module_tensors = {k: v for k, v in stacked.items() if k not in tensor_keys}
            tensors = {k: stacked[k] for k in tensor_keys}
            return torch.func.functional_call(self.call, module_tensors, (fn, rebuilt, tensors), strict=False)

        in_dims = (0, *(None if a is None else 0 for a in trees))
        return torch.func.vmap(member, in_dims=in_dims)(self.stacked, *trees)

    def draw(self, fn: Callable[..., Any], *args: Any) -> Any:
        outs = []
        saved = _get_rng(self.device)
        try:
            for k in range(len(self.members)):
                _set_rng(self.device, self.rng[k])
                outs.append(fn(*(None if a is None else a[k] for a in args)))
                self.rng[k] = _get_rng(self.device)
        finally:
            _set_rng(self.device, saved)
        return torch.utils._pytree.tree_map(lambda *xs: torch.stack(xs), *outs)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
             params: Sequence[torch.Tensor] | None = None) -> None:
        stacked = self.optimizers[id(optimizer)]
        inputs = ([p for g in stacked.param_groups for p in g["params"]] if params is None
                  else [self.by_id[id(p)] for p in params])
        stacked.zero_grad(set_to_none=True)
        loss.sum().backward(inputs=inputs)
        stacked.step()

    def polyak(self, source: nn.Module, target: nn.Module, tau: float) -> None:
        polyak_update([self.by_id[id(p)] for p in source.parameters()],
                      [self.by_id[id(p)] for p in target.parameters()], tau)

    def schedule(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        with warnings.catch_warnings():  # the template's own optimizer never steps here; the stacked one does
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        stacked = self.optimizers[id(scheduler.optimizer)]
        for group, sgroup in zip(scheduler.optimizer.param_groups, stacked.param_groups, strict=True):
            sgroup["lr"] = group["lr"]

    # ------------------------------------------------------------------ one step of every member
    def update(self, batches: Sequence[Batch]) -> list[Any]:
        """One update of every member, member ``k`` on ``batches[k]``; returns each member's ``UpdateResult``."""
        from rlkit.algorithm import UpdateResult

        result = self.template.update_with(self, stack_batches(batches))
        self.synced = False
        out = []
        for k in range(len(self.members)):
            metrics = {name: value[k] if isinstance(value, torch.Tensor) and value.dim() > 0 else value
                       for name, value in result.metrics.items()}
            priorities = None if result.priorities is None else result.priorities[k]
            out.append(UpdateResult(metrics, priorities))
        return out


def _get_rng(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)
