"""The fidelity harness's shared parts: comparing quantities, the report rows, and importing a reference.

Every adapter (one file per reference repository, :mod:`bench.fidelity.registry`) follows the four steps of
:class:`Adapter`: ``build`` rlkit's algorithm and the reference's objects from the same configuration,
``transplant`` rlkit's initial parameters into the reference, ``draws`` every random draw of an update once
(fed to both sides), and ``compare`` one update of each side on the same batch, returning named pairs of
quantities (targets, each loss term, gradients, updated parameters).  :func:`run_adapter` drives them over
``updates`` steps and turns the pairs into :class:`Row` s.

A quantity is ``equal`` when its largest relative difference ``max|a - b| / max(max|b|, tiny)`` is below the
case's tolerance: 1e-6 in float64 by default, or the reference's own precision where it cannot run in float64
(an adapter states it in :attr:`Case.tolerance` and :attr:`Case.note`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import tarfile
import tempfile
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

#: relative tolerance of a float64 comparison
FLOAT64_TOLERANCE = 1e-6
_TINY = 1e-12


@dataclass(frozen=True)
class Row:
    """One compared quantity: what the report table prints and the JSON holds."""

    method: str
    reference: str
    commit: str
    quantity: str
    max_abs: float
    max_rel: float
    verdict: str  # "equal" | "differs"
    switch: str  # the rlkit override that reproduces the reference ("" when none is needed)
    tolerance: float = FLOAT64_TOLERANCE


@dataclass(frozen=True)
class Case:
    """One configuration an adapter checks: the JSON ``method``, rlkit's config overrides, and the switch
    among them that makes rlkit reproduce the reference (named in every row of the case)."""

    method: str
    overrides: tuple[str, ...] = ()
    switch: str = ""
    tolerance: float = FLOAT64_TOLERANCE
    note: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


def as_array(value: Any) -> np.ndarray:
    """A float64 numpy array of a tensor (torch, JAX, numpy) or number, detached and on the CPU."""
    if hasattr(value, "detach"):  # torch.Tensor (no import of torch needed here)
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def flatten_quantities(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts/lists of arrays -> ``{"a.b.0": array}`` (parameters and gradients are compared leaf by leaf
    and reported as one row per named quantity by :func:`difference`)."""
    if isinstance(value, Mapping):
        out: dict[str, np.ndarray] = {}
        for key in value:
            out.update(flatten_quantities(value[key], f"{prefix}{key}."))
        return out
    if isinstance(value, list | tuple):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten_quantities(item, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: as_array(value)}


def difference(ours: Any, theirs: Any) -> tuple[float, float]:
    """``(max_abs, max_rel)`` between two quantities of the same structure and shapes.

    ``max_rel = max|a - b| / max(max|b|, 1e-12)``: the error relative to the reference's scale, so that a
    quantity that is almost zero (a gradient at an optimum) does not read as a large relative error.
    Structures (dicts/lists of arrays, e.g. parameter sets) are compared leaf by leaf and the worst leaf
    counts.  A shape or key mismatch is a harness error, not a verdict.
    """
    a, b = flatten_quantities(ours), flatten_quantities(theirs)
    if a.keys() != b.keys():
        raise ValueError(f"the two sides name different leaves: {sorted(a.keys() ^ b.keys())}")
    max_abs = max_rel = 0.0
    for key in a:
        x, y = a[key], b[key]
        if x.shape != y.shape:
            if x.size == y.size:  # (B,) vs (B, 1): the same numbers laid out differently
                x = x.reshape(y.shape)
            else:
                raise ValueError(f"quantity '{key}' has shape {x.shape} here and {y.shape} in the reference")
        if x.size == 0:
            continue
        abs_err = float(np.max(np.abs(x - y)))
        if not np.isfinite(abs_err):
            abs_err = 0.0 if np.array_equal(x, y, equal_nan=True) else float("inf")
        scale = max(float(np.max(np.abs(y))) if np.isfinite(y).all() else float("inf"), _TINY)
        max_abs = max(max_abs, abs_err)
        max_rel = max(max_rel, abs_err / scale if np.isfinite(scale) else abs_err)
    return max_abs, max_rel


def verdict(max_rel: float, tolerance: float = FLOAT64_TOLERANCE) -> str:
    """``equal`` below the tolerance, ``differs`` otherwise."""
    return "equal" if max_rel <= tolerance else "differs"


def make_rows(case: Case, reference: str, commit: str, quantities: Mapping[str, tuple[Any, Any]],
              prefix: str = "") -> list[Row]:
    """One :class:`Row` per ``name -> (rlkit value, reference value)``."""
    rows = []
    for name, (ours, theirs) in quantities.items():
        max_abs, max_rel = difference(ours, theirs)
        rows.append(Row(case.method, reference, commit, f"{prefix}{name}", max_abs, max_rel,
                        verdict(max_rel, case.tolerance), case.switch, case.tolerance))
    return rows


class Adapter(ABC):
    """One reference repository's check (the four steps of the module docstring).

    Subclasses set :attr:`name` (the ``--ref NAME``), :attr:`reference` (``owner/repo``), list their
    :meth:`cases`, and implement the four steps.  The harness constructs an adapter with the local clone's
    path (``refs`` holds every ``--ref`` given, for a reference that needs a helper library from another one).
    """

    name: ClassVar[str]
    reference: ClassVar[str]
    #: the other ``--ref`` names this adapter needs besides its own
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path, refs: Mapping[str, Path]) -> None:
        self.path = Path(path)
        self.refs = dict(refs)

    def commit(self) -> str:
        """The reference clone's checked-out commit (where the adapter reads another branch, it overrides)."""
        return git_commit(self.path)

    @abstractmethod
    def cases(self) -> list[Case]:
        """The configurations to check, each a JSON ``method``."""

    @abstractmethod
    def build(self, case: Case) -> None:
        """Build rlkit's algorithm and the reference's objects for ``case`` (float64 where both allow)."""

    @abstractmethod
    def transplant(self) -> None:
        """Copy rlkit's initial parameters (and optimizer settings) into the reference."""

    @abstractmethod
    def draws(self, step: int) -> dict[str, Any]:
        """The batch and every random draw of update ``step``, made once (seeded by ``step``)."""

    @abstractmethod
    def compare(self, draws: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Run one update on each side with ``draws``; return ``name -> (rlkit value, reference value)``."""


def run_adapter(adapter: Adapter, updates: Sequence[int] = (1, 50), methods: Iterable[str] | None = None
                ) -> list[Row]:
    """Rows of every case of ``adapter``: each case is built once, transplanted, then updated up to
    ``max(updates)`` times in lockstep; the quantities of the updates listed in ``updates`` are reported with a
    ``u<k>/`` prefix (``u1/critic_loss``, ``u50/params.actor``)."""
    wanted = set(methods) if methods is not None else None
    rows: list[Row] = []
    commit = adapter.commit()
    for case in adapter.cases():
        if wanted is not None and case.method not in wanted:
            continue
        adapter.build(case)
        adapter.transplant()
        for step in range(1, max(updates) + 1):
            quantities = adapter.compare(adapter.draws(step))
            if step in updates:
                rows += make_rows(case, adapter.reference, commit, quantities, prefix=f"u{step}/")
    return rows


# ------------------------------------------------------------------------------------------ report


def format_table(rows: Sequence[Row]) -> str:
    """A fixed-width table of the rows, one line each, then a one-line count per verdict."""
    header = ("method", "quantity", "max_abs", "max_rel", "verdict", "switch")
    lines = [[r.method, r.quantity, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", r.verdict, r.switch or "-"]
             for r in rows]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    equal = sum(r.verdict == "equal" for r in rows)
    out.append(f"{equal} of {len(rows)} quantities equal")
    return "\n".join(out)


def write_json(rows: Sequence[Row], path: Path) -> None:
    """``{"rows": [...]}`` written atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"rows": [asdict(r) for r in rows]}, indent=1))
    tmp.replace(path)


# --------------------------------------------------------------------------------- reference access


def git_commit(path: Path, rev: str = "HEAD") -> str:
    """The commit hash of ``rev`` in the clone at ``path`` ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", rev], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def branch_tree(path: Path, branch: str) -> Path:
    """A read-only export of ``branch`` of the clone at ``path`` (tried as given, then as ``origin/<branch>``)
    into a fresh temporary folder, for references whose variants live on branches (sail-sg/OPER)."""
    for rev in (branch, f"origin/{branch}"):
        if git_commit(path, rev) != "unknown":
            break
    else:
        raise ValueError(f"the clone at {path} has no branch '{branch}'")
    out = Path(tempfile.mkdtemp(prefix=f"fidelity-{Path(path).name}-{branch.replace('/', '_')}-"))
    archive = subprocess.run(["git", "-C", str(path), "archive", "--format=tar", rev], capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryFile() as buf:
        buf.write(archive)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            tar.extractall(out, filter="data")
    return out


class _Anything(types.ModuleType):
    """A stand-in for a logging/CLI module: every attribute is itself, and calling it returns itself."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def stub_module(name: str) -> types.ModuleType:
    """A module ``name`` whose every attribute and call is a no-op (for a reference's logging/CLI imports only:
    wandb, tensorboardX, absl flags...)."""
    module = _Anything(name)
    module.__path__ = []  # importable as a package: ``import wandb.sdk`` also resolves
    return module


@contextlib.contextmanager
def reference_imports(path: Path, stubs: Sequence[str] = (), isolate: Sequence[str] = ()) -> Iterator[None]:
    """Import from the reference clone at ``path``: it is first on ``sys.path``; each name in ``stubs`` that does
    not import (not installed, or installed but broken) is a :func:`stub_module`; each top-level name in
    ``isolate`` (modules the reference shares by name with others, e.g. ``utils``, ``learner``) is dropped from
    ``sys.modules`` before and restored after, so two references (or rlkit) never see each other's module of the
    same name.  Modules imported inside keep working after the block (they hold their own references)."""
    path = str(Path(path).resolve())
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in isolate}
    for name in saved:
        del sys.modules[name]
    added = []
    for name in stubs:
        if name in sys.modules:
            continue
        try:  # installed *and* importable (a torchvision built for another torch is installed but fails)
            importlib.import_module(name)
            found = True
        except Exception:  # noqa: BLE001 -- any import failure means: stand in for it
            found = False
        if not found:
            sys.modules[name] = stub_module(name)
            added.append(name)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)
        for name in [n for n in sys.modules if n.split(".")[0] in isolate]:
            del sys.modules[name]
        sys.modules.update(saved)
        for name in added:
            sys.modules.pop(name, None)


def import_reference(path: Path, module: str, stubs: Sequence[str] = (), isolate: Sequence[str] = ()
                     ) -> types.ModuleType:
    """Import ``module`` (dotted, relative to the clone's root) from the reference at ``path``."""
    top = module.split(".")[0]
    with reference_imports(path, stubs, (*isolate, top)):
        return importlib.import_module(module)


# ------------------------------------------------------------------------------------------ rlkit side


def rlkit_algorithm(overrides: Sequence[str], observation_space: Any, action_space: Any, device: str = "cpu"
                    ) -> Any:
    """rlkit's algorithm exactly as ``rlkit train <overrides>`` builds it (config composition, per-family and
    per-regime defaults, the ``_target_`` class), on the given spaces, without an env or a dataset."""
    import torch

    from rlkit.config import compose
    from rlkit.regimes.base import build_algorithm

    cfg = compose(["logging.progress=false", "logging.tensorboard=false", *overrides])
    return build_algorithm(cfg, observation_space, action_space, torch.device(device))


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """``torch.set_default_dtype(dtype)`` for the block (modules built inside are float64 when asked)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)
