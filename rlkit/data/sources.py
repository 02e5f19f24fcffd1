"""Where a dataset comes from: the dispatcher behind ``rlkit.data.load``, ``rlkit data info``/``download``.

``load(dataset_id, source="auto")`` tries, in this order, and stops at the first that works:

1. an explicit ``path`` (a D4RL-layout hdf5 file);
2. a cached D4RL file: ``$RLKIT_DATA/d4rl/<file>`` (default ``~/.cache/rlkit/datasets/d4rl``), then D4RL's
   own cache (``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``), so an existing D4RL download is reused;
3. a D4RL download into ``$RLKIT_DATA/d4rl`` (resumable, size-checked, atomic);
4. Minari, when installed and the id has a counterpart: its local store, then a Minari download;
5. ``collect(dataset_id)`` -- local collection -- with a loud warning on stderr and
   ``provenance.fallback_reasons`` saying why every earlier source failed.

``source="d4rl"`` / ``"minari"`` / ``"collected"`` / ``"file"`` use that one source and never fall back.
Every returned dataset has ``provenance`` with at least ``source`` (d4rl | minari | collected | file),
``id`` and ``path``; D4RL files add ``url``, ``size`` and ``sha256``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.data import minari as minari_source
from rlkit.data.collectable import parse_dataset_id
from rlkit.data.d4rl import (
    D4RL_DATASETS,
    get_spec,
    is_d4rl_id,
    load_d4rl_file,
    max_steps_for,
    read_d4rl_file,
    to_dataset,
)
from rlkit.data.dataset import Dataset
from rlkit.data.download import download_file, sha256_of
from rlkit.data.hdf5 import list_keys, read_provenance
from rlkit.errors import ConfigError, DatasetError, choices_hint
from rlkit.utils import atomic_write_text

SOURCES = ("auto", "d4rl", "minari", "collected", "file")
DATA_ENV = "RLKIT_DATA"
DEFAULT_DATA_DIR = "~/.cache/rlkit/datasets"
D4RL_CACHE_ENV = "D4RL_DATASET_DIR"
D4RL_DEFAULT_CACHE = "~/.d4rl/datasets"
_HASH_INDEX = "sha256-index.json"


# ----------------------------------------------------------------------------------------- locations
def data_dir() -> Path:
    """rlkit's dataset cache: ``$RLKIT_DATA`` or ``~/.cache/rlkit/datasets``."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def d4rl_dir() -> Path:
    """Where rlkit downloads D4RL files."""
    return data_dir() / "d4rl"


def d4rl_candidates(dataset_id: str) -> list[Path]:
    """Every place a D4RL file for ``dataset_id`` is looked for, in order (rlkit's cache, then D4RL's)."""
    name = get_spec(dataset_id).filename
    d4rl_cache = Path(os.environ.get(D4RL_CACHE_ENV) or D4RL_DEFAULT_CACHE).expanduser()
    return [d4rl_dir() / name, d4rl_cache / name]


def find_d4rl_file(dataset_id: str) -> Path | None:
    """The first existing cached file for ``dataset_id``, or ``None``."""
    for candidate in d4rl_candidates(dataset_id):
        if candidate.is_file():
            return candidate
    return None


def _id_from_filename(path: Path) -> str | None:
    for spec in D4RL_DATASETS.values():
        if spec.filename == path.name:
            return spec.id
    return None


# -------------------------------------------------------------------------------------- fingerprints
def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{size, sha256}`` of a file; the hash is cached in ``$RLKIT_DATA/sha256-index.json`` by path, size
    and mtime so a 500 MB file is hashed once, not at every run."""
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    index_path = data_dir() / _HASH_INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return {"size": stat.st_size, "sha256": entry["sha256"]}
    digest = sha256_of(path)
    index[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only cache only costs re-hashing next time
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
    return {"size": stat.st_size, "sha256": digest}


# ------------------------------------------------------------------------------------------ download
def download(dataset_id: str, progress: bool = True) -> Path:
    """Fetch the D4RL file for ``dataset_id`` into ``$RLKIT_DATA/d4rl`` (no-op if a cached copy exists)."""
    spec = get_spec(dataset_id)
    existing = find_d4rl_file(dataset_id)
    if existing is not None:
        return existing
    dest = d4rl_dir() / spec.filename
    if progress:
        print(f"rlkit: downloading {dataset_id} from {spec.url} to {dest}", file=sys.stderr)
    path = download_file(spec.url, dest, expected_size=spec.known_size, progress=progress)
    fingerprint(path)  # hash once now, while the file is hot in the page cache
    return path


# ----------------------------------------------------------------------------------------- per source
def _d4rl_provenance(dataset_id: str, path: Path) -> dict[str, Any]:
    spec = get_spec(dataset_id)
    prov: dict[str, Any] = {
        "source": "d4rl",
        "id": dataset_id,
        "path": str(path.resolve()),
        "url": spec.url,
        "filename": spec.filename,
        **fingerprint(path),
    }
    if spec.known_sha256 is not None:
        prov["sha256_matches_published"] = prov["sha256"] == spec.known_sha256
    return prov


def _load_d4rl(dataset_id: str, path: Path) -> Dataset:
    return load_d4rl_file(path, dataset_id, _d4rl_provenance(dataset_id, path))


def _load_path(dataset_id: str, path: str | os.PathLike, source: str) -> Dataset:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"dataset file '{path}' does not exist")
    if source == "d4rl":
        known = dataset_id if is_d4rl_id(dataset_id) else _id_from_filename(path)
        if known is not None:
            prov = _d4rl_provenance(known, path)
            prov["id"] = dataset_id
            return load_d4rl_file(path, dataset_id, prov, max_steps_for(known))
    stored = read_provenance(path) or {}
    prov = {
        "source": stored.get("source", "file"),
        "id": dataset_id,
        "path": str(path.resolve()),
        **fingerprint(path),
    }
    return load_d4rl_file(path, dataset_id, prov, max_steps_for(dataset_id or _id_from_filename(path)))


def _load_minari(dataset_id: str, reasons: list[str] | None = None) -> Dataset:
    """Minari's local store first, then a Minari download."""
    try:
        return minari_source.load_minari(dataset_id, download=False)
    except DatasetError as err:
        if minari_source.minari_id(dataset_id) is None or not minari_source.is_installed():
            raise
        if reasons is not None:
            reasons.append(f"Minari local: {err}")
    return minari_source.load_minari(dataset_id, download=True)


def _collect(dataset_id: str, collect: Callable[[str], Dataset], reasons: list[str] | None) -> Dataset:
    dataset = collect(dataset_id)
    prov = dict(dataset.provenance)
    prov["source"] = "collected"
    prov["id"] = dataset_id
    prov.setdefault("path", None)
    if reasons is not None:
        prov["fallback_from"] = "auto"
        prov["fallback_reasons"] = list(reasons)
    dataset.provenance = prov
    return dataset


def _warn_fallback(dataset_id: str, reasons: list[str]) -> None:
    bar = "!" * 100
    lines = [
        bar,
        f"rlkit WARNING: no D4RL or Minari data could be loaded for '{dataset_id}':",
        *(f"  - {reason}" for reason in reasons),
        "Falling back to LOCAL COLLECTION. This is NOT the published dataset: scores are not comparable with",
        "D4RL tables. provenance.source = 'collected' is recorded in the run's summary.json.",
    ]
    if is_d4rl_id(dataset_id):
        lines.append(
            f"To use the real data, place {get_spec(dataset_id).filename} at "
            f"{d4rl_candidates(dataset_id)[0]} (or run `rlkit data download {dataset_id}`); "
            "source=d4rl never falls back."
        )
    lines.append(bar)
    print("\n".join(lines), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- load
def load(
    dataset_id: str,
    source: str = "auto",
    path: str | os.PathLike | None = None,
    collect: Callable[[str], Dataset] | None = None,
) -> Dataset:
    """Load ``dataset_id`` from ``source`` (module docstring: the ``auto`` order and the guarantees)."""
    if source not in SOURCES:
        raise ConfigError(f"unknown dataset source '{source}'; choose one of {choices_hint(SOURCES)}")
    if path is not None:
        if source not in ("auto", "file", "d4rl"):
            raise ConfigError(
                f"a dataset path can be combined with source=auto, file or d4rl, not '{source}'"
            )
        return _load_path(dataset_id, path, source)
    if source == "file":
        raise ConfigError("source=file needs a path to a D4RL-layout hdf5 file (dataset.path=...)")
    if source == "collected":
        if collect is None:
            raise ConfigError("source=collected needs a collection function; none was given")
        return _collect(dataset_id, collect, None)
    if source == "minari":
        return _load_minari(dataset_id)
    if source == "d4rl":
        cached = find_d4rl_file(dataset_id)
        return _load_d4rl(dataset_id, cached if cached is not None else download(dataset_id))

    reasons: list[str] = []
    if is_d4rl_id(dataset_id):
        cached = find_d4rl_file(dataset_id)
        if cached is not None:
            return _load_d4rl(dataset_id, cached)
        try:
            return _load_d4rl(dataset_id, download(dataset_id))
        except DatasetError as err:
            reasons.append(f"D4RL: {err}")
    else:
        reasons.append(f"D4RL: '{dataset_id}' is not a D4RL dataset id")
    if minari_source.minari_id(dataset_id) is None:
        reasons.append(f"Minari: no counterpart for '{dataset_id}'")
    elif not minari_source.is_installed():
        reasons.append(f"Minari: not installed ({minari_source.INSTALL_HINT})")
    else:
        try:
            return _load_minari(dataset_id, reasons)
        except DatasetError as err:
            reasons.append(f"Minari: {err}")
    if collect is None:
        raise DatasetError(f"no source could provide dataset '{dataset_id}': " + "; ".join(reasons))
    try:
        parse_dataset_id(dataset_id)  # can rlkit collect this dataset at all?
    except ConfigError as err:
        raise DatasetError(f"{err} ({'; '.join(reasons)})") from err
    _warn_fallback(dataset_id, reasons)
    return _collect(dataset_id, collect, reasons)


# --------------------------------------------------------------------------------------------- info
def resolve(path_or_id: str) -> tuple[str | None, Path | None]:
    """``(dataset id, file)`` of a path (the id from a D4RL file name, else None) or of a dataset id (its cached
    D4RL file, else None)."""
    candidate = Path(path_or_id).expanduser()
    if candidate.is_file():
        return _id_from_filename(candidate), candidate
    if is_d4rl_id(path_or_id):
        return path_or_id, find_d4rl_file(path_or_id)
    return path_or_id, None


def info(path_or_id: str) -> dict[str, Any]:
    """What ``rlkit data info`` prints: raw rows, transitions after the transform, episodes, return
    statistics, terminal/timeout counts and provenance.  Nothing is downloaded."""
    dataset_id, path = resolve(path_or_id)
    if path is None:
        if minari_source.minari_id(path_or_id) is not None and minari_source.is_installed():
            dataset = minari_source.load_minari(path_or_id, download=False)
            out = {"id": path_or_id, "path": dataset.provenance.get("path"), "keys": None,
                   "raw_rows": dataset.size, "raw_terminals": int(dataset.terminals.sum()),
                   "raw_timeouts": int(dataset.timeouts.sum())}
            return {**out, **_summary(dataset)}
        if is_d4rl_id(path_or_id):
            places = d4rl_candidates(path_or_id)
            raise DatasetError(
                f"dataset '{path_or_id}' is not downloaded (looked in {', '.join(map(str, places))}); "
                f"run `rlkit data download {path_or_id}` or place the file at {places[0]}"
            )
        raise DatasetError(f"'{path_or_id}' is neither an existing file nor a known dataset id; "
                           f"known ids: {choices_hint(D4RL_DATASETS)}")
    keys = list_keys(path, dataset_id)
    raw = read_d4rl_file(path, dataset_id)
    stored = read_provenance(path) or {}
    if dataset_id is not None and is_d4rl_id(dataset_id) and not stored:
        prov = _d4rl_provenance(dataset_id, path)
    else:
        prov = {"source": stored.get("source", "file"), "id": dataset_id, "path": str(path.resolve()),
                **fingerprint(path)}
        prov = {**stored, **prov}
    dataset = to_dataset(raw, prov, max_steps_for(dataset_id))
    out = {
        "id": dataset_id,
        "path": str(path),
        "keys": {name: [list(shape), dtype] for name, (shape, dtype) in sorted(keys.items())},
        "raw_rows": int(len(raw["rewards"])),
        "raw_terminals": int(np.count_nonzero(raw["terminals"])),
        "raw_timeouts": int(np.count_nonzero(raw["timeouts"])) if "timeouts" in raw else None,
    }
    return {**out, **_summary(dataset)}


def _summary(dataset: Dataset) -> dict[str, Any]:
    summary = dataset.summary()
    lengths = dataset.episode_lengths
    summary.update(
        episode_length_mean=float(lengths.mean()),
        episode_length_min=int(lengths.min()),
        episode_length_max=int(lengths.max()),
    )
    return summary


def format_info(d: dict[str, Any]) -> str:
    """Human-readable rendering of :func:`info`'s dict."""
    raw_timeouts = d.get("raw_timeouts")
    if raw_timeouts is None:
        raw_timeouts = "absent (D4RL's step counter decides)"
    transform = d["provenance"].get("transform", "the source conversion")
    lines = [
        f"dataset      {d.get('id') or '-'}",
        f"path         {d.get('path') or '-'}",
        f"raw rows     {d['raw_rows']}   (terminals {d['raw_terminals']}, timeouts {raw_timeouts})",
        f"transitions  {d['transitions']}   after {transform}",
        f"episodes     {d['episodes']}   (length mean {d['episode_length_mean']:.1f}, "
        f"min {d['episode_length_min']}, max {d['episode_length_max']})",
        f"terminals    {d['terminals']}",
        f"timeouts     {d['timeouts']}   (episode cuts without a terminal, incl. the last row)",
        f"returns      mean {d['return_mean']:.3f}  std {d['return_std']:.3f}  "
        f"min {d['return_min']:.3f}  max {d['return_max']:.3f}",
        f"dims         observation {d['observation_dim']}, action {d['action_dim']}",
    ]
    if d.get("keys"):
        lines.append("keys")
        lines.extend(f"  {name:<40} {tuple(shape)} {dtype}" for name, (shape, dtype) in d["keys"].items())
    lines.append("provenance")
    lines.extend(f"  {key:<26} {value}" for key, value in sorted(d["provenance"].items()))
    return "\n".join(lines)
