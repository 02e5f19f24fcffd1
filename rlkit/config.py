"""Config composition: Hydra groups under ``configs/`` turned into one validated ``DictConfig``.

``compose(overrides)`` builds ``config.yaml`` + ``algo/<name>.yaml`` + ``env/<name>.yaml`` +
``sampler/<name>.yaml`` with the user's overrides, then

1. applies the algorithm's per-environment-family defaults (``algo.per_family.<family>``, e.g. IQL's
   AntMaze expectile), then its per-regime defaults for an explicit ``regime=`` (``algo.per_regime.<regime>``,
   e.g. IQL's constant learning rate when fine-tuning online), and its benchmark protocol
   (``algo.protocol_per_family.<family>``: dotted run keys such as ``env.kwargs.protocol`` or
   ``eval.episodes``, which win over the env config, e.g. SPR's Atari 100k protocol) to every key the user
   did not set on the command line,
2. checks every value whose default in ``config.yaml`` has a type against that type, and the few
   enumerated keys against their choices.

Any problem becomes a :class:`~rlkit.errors.ConfigError` with one line naming the key and the valid
choices; Hydra's own multi-line messages never reach the user.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from rlkit.errors import ConfigError, choices_hint
from rlkit.regimes import REGIME_CLASSES

GROUPS = ("algo", "env", "sampler", "addon")
ENUMS = {
    "device": ("auto", "cpu", "cuda"),
    "eval.protocol": ("assigned", "first_finished"),
    "resume": (False, True, "auto"),
    "regime": (None, *REGIME_CLASSES),
}
#: keys that may differ between a checkpoint's config and the resumed run's config (the env's fit metadata
#: describes the env named by env.name and changes nothing in a run; checkpoints written before it existed resume)
RESUMABLE_KEYS = ("resume", "run_dir", "train.steps", "device", "logging", "logger", "eval.episodes",
                  "eval.video_interval", "eval.video_size", "debug",
                  "checkpoint", "hydra", "env.observation", "env.action", "env.suite")


def config_dir() -> Path:
    """The ``configs/`` directory: ``$RLKIT_CONFIG_DIR``, else the installed ``rlkit.configs`` package data
    (the repository's ``configs/`` folder in an editable install)."""
    if os.environ.get("RLKIT_CONFIG_DIR"):
        return Path(os.environ["RLKIT_CONFIG_DIR"]).resolve()
    import importlib.util

    spec = importlib.util.find_spec("rlkit.configs")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "config.yaml").exists():
            return Path(location)
    here = Path(__file__).resolve().parent.parent / "configs"  # a source checkout that is not installed
    if (here / "config.yaml").exists():
        return here
    raise ConfigError("cannot find rlkit's configs (rlkit.configs); reinstall with `pip install -e .`")


def extra_config_dirs() -> list[Path]:
    """Folders on ``$RLKIT_CONFIG_PATH`` (``os.pathsep``-separated) whose ``algo/``, ``env/``, ``sampler/``
    YAML files add options beside rlkit's own (a method kept outside the package: one module + one YAML)."""
    dirs = [Path(p).expanduser().resolve() for p in os.environ.get("RLKIT_CONFIG_PATH", "").split(os.pathsep) if p]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"RLKIT_CONFIG_PATH names '{d}', which is not a folder; fix or unset it")
    return dirs


def searchpath_overrides() -> list[str]:
    """The Hydra override that adds :func:`extra_config_dirs` to the config search path (or nothing)."""
    extra = extra_config_dirs()
    return [f"hydra.searchpath=[{','.join(f'file://{d}' for d in extra)}]"] if extra else []


def _option_files(group: str) -> dict[str, Path]:
    """``{name: YAML file}`` of a group, rlkit's own folder first, then the extra folders."""
    out: dict[str, Path] = {}
    for folder in (config_dir(), *extra_config_dirs()):
        for path in sorted((folder / group).glob("*.yaml")):
            out.setdefault(path.stem, path)
    return out


def _catalog_nodes(group: str) -> dict[str, dict[str, Any]]:
    """The generated options of a group: the env catalog's rows (:mod:`rlkit.envs.catalog`) for ``env``."""
    if group != "env":
        return {}
    from rlkit.envs.catalog import env_configs

    return env_configs()


def group_options(group: str) -> list[str]:
    """Names of the options of a config group (``algo``, ``env``, ``sampler``): its YAML files (extra folders
    included), and for ``env`` the rows of the env catalog."""
    return sorted(set(_option_files(group)) | set(_catalog_nodes(group)))


def group_nodes(group: str) -> dict[str, DictConfig]:
    """``{name: root-level config node}`` of every option of a group: catalog rows (in table order), then the
    YAML files."""
    out = {name: OmegaConf.create(node) for name, node in _catalog_nodes(group).items()}
    for name, path in _option_files(group).items():
        out[name] = OmegaConf.load(path)
    return out


def group_descriptions(group: str) -> dict[str, str]:
    """``{name: one-line description}`` of every option of a group (what ``rlkit list`` prints)."""
    out = {}
    for name, raw in sorted(group_nodes(group).items()):
        node = raw.get(group, raw) if isinstance(raw, DictConfig) else {}
        desc = node.get("description", "") if isinstance(node, DictConfig) else ""
        out[name] = " ".join(str(desc).split())
    return out


def register_catalogs() -> None:
    """Put the generated config options (the env catalog) into Hydra's ConfigStore; call before composing."""
    from rlkit.envs.catalog import register

    files = _option_files("env")
    both = sorted(set(_catalog_nodes("env")) & set(files))
    if both:
        raise ConfigError(f"env '{both[0]}' is both a row of rlkit.envs.catalog and {files[both[0]]}; "
                          "remove one of them")
    register()


def override_value(overrides: list[str], key: str) -> str | None:
    """The value the command line gives ``key`` (``key=V`` or ``+key=V``; a group or a dotted key), or None."""
    for ov in overrides:
        m = re.fullmatch(rf"\+?{re.escape(key)}=(.*)", ov)
        if m:
            return m.group(1)
    return None


def _user_keys(overrides: list[str]) -> set[str]:
    keys = set()
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


def _check_group_choices(overrides: list[str]) -> None:
    for group in GROUPS:
        choice = override_value(overrides, group)
        if choice is None or "," in choice:  # sweeps are checked per job
            continue
        options = group_options(group)
        if choice not in options:
            close = difflib.get_close_matches(choice, options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {group} '{choice}'{hint}; choose one of: {choices_hint(options)}")


def _translate_hydra_error(exc: Exception, overrides: list[str]) -> ConfigError:
    msg = str(exc)
    m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        return ConfigError(f"unknown config key '{key}'{_suggest_key(key)}; use '+{key}=VALUE' to add a new "
                           "key, or `rlkit train --cfg job` to see all keys")
    m = re.search(r"Could not find '([^']+)'", msg)
    if m:
        path = m.group(1)
        group = path.split("/")[0]
        return ConfigError(f"unknown {group} '{path.split('/', 1)[-1]}'; choose one of: "
                           f"{choices_hint(group_options(group)) if group in GROUPS else '?'}")
    if "mismatched input" in msg or "no viable alternative" in msg or "extraneous input" in msg:
        return ConfigError(f"cannot parse the overrides {' '.join(overrides)}: write them as key=value "
                           "(quote values with spaces)")
    first = msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__
    return ConfigError(f"bad configuration: {first}")


def root_defaults() -> dict[str, Any]:
    """``config.yaml`` flattened to dotted keys (unresolved): every root key with its default."""
    return _flatten(OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False))


def _suggest_key(key: str) -> str:
    try:
        flat = list(root_defaults())
    except Exception:  # pragma: no cover - config dir broken
        return ""
    close = difflib.get_close_matches(key, flat, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "defaults":
                continue
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """Compose and validate the run config from command-line style overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    _check_group_choices(overrides)
    register_catalogs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=[*overrides, *searchpath_overrides()])
    except ConfigError:
        raise
    except Exception as exc:  # Hydra raises several exception types with multi-line messages
        raise _translate_hydra_error(exc, overrides) from exc
    finally:
        GlobalHydra.instance().clear()
    return finalize(cfg, overrides)


def finalize(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply per-family algorithm defaults and validate types (also used for Hydra multirun jobs)."""
    user_keys = _user_keys(overrides)
    check_algo_choices(cfg)
    apply_family_defaults(cfg, user_keys)
    apply_regime_defaults(cfg, user_keys)
    validate(cfg)
    return cfg


def check_algo_choices(cfg: DictConfig) -> None:
    """Refuse, in one line, a value outside ``algo.choices.<key>`` (an algorithm's enumerated keys that other
    keys interpolate on, e.g. FamO2O's ``algo.base`` selecting ``algo.settings.<base>``), before anything
    resolves: an unknown value would otherwise surface as an OmegaConf interpolation traceback."""
    choices = OmegaConf.select(cfg, "algo.choices")
    if choices is None:
        return
    for key, allowed in OmegaConf.to_container(choices, resolve=False).items():
        value = OmegaConf.select(cfg, f"algo.{key}")
        if value not in allowed:
            name = OmegaConf.select(cfg, "algo.name")
            raise ConfigError(f"bad value for 'algo.{key}': {value!r}; algo={name} takes one of: "
                              f"{', '.join(str(c) for c in allowed)}")


def apply_family_defaults(cfg: DictConfig, user_keys: set[str]) -> None:
    """Merge ``algo.per_family[env.family]`` into ``algo``, and set the run keys of
    ``algo.protocol_per_family[env.family]`` (``{dotted.key: value}``), for keys the user did not override."""
    family = OmegaConf.select(cfg, "env.family")
    if not family:
        return
    per_family = OmegaConf.select(cfg, "algo.per_family")
    if per_family is not None and family in per_family:
        with open_dict(cfg):
            for key, value in _flatten(OmegaConf.to_container(per_family[family], resolve=False)).items():
                if f"algo.{key}" not in user_keys:
                    OmegaConf.update(cfg, f"algo.{key}", value, merge=False)
    protocol = OmegaConf.select(cfg, "algo.protocol_per_family")
    if protocol is not None and family in protocol:
        with open_dict(cfg):
            for key, value in OmegaConf.to_container(protocol[family], resolve=False).items():
                if key not in user_keys:
                    OmegaConf.update(cfg, key, value, merge=False)


def apply_regime_defaults(cfg: DictConfig, user_keys: set[str]) -> None:
    """Merge ``algo.per_regime[regime]`` into ``algo`` for keys the user did not override (``regime=`` given)."""
    regime = OmegaConf.select(cfg, "regime")
    per_regime = OmegaConf.select(cfg, "algo.per_regime")
    if not regime or per_regime is None or regime not in per_regime:
        return
    with open_dict(cfg):
        for key, value in _flatten(OmegaConf.to_container(per_regime[regime], resolve=False)).items():
            if f"algo.{key}" not in user_keys:
                OmegaConf.update(cfg, f"algo.{key}", value, merge=False)


def validate(cfg: DictConfig) -> None:
    """Check enumerated keys and the types of every key that has a typed default in ``config.yaml``."""
    for key, choices in ENUMS.items():
        value = OmegaConf.select(cfg, key)
        if value not in choices:
            raise ConfigError(f"bad value for '{key}': {value!r}; choose one of: "
                              f"{', '.join(str(c) for c in choices)}")
    for key, default in root_defaults().items():
        if default is None or isinstance(default, str) and "${" in default or key in ENUMS:
            continue
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(f"bad value for '{key}': {value!r} is not a {type(default).__name__} "
                              f"(default {default!r})")
    for key in ("train.steps", "train.batch_size", "eval.episodes"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, int) and value <= 0:
            raise ConfigError(f"bad value for '{key}': {value}; it must be a positive integer")
    population = OmegaConf.select(cfg, "train.population")
    if population is not None and (not isinstance(population, int) or isinstance(population, bool) or population < 1):
        raise ConfigError(f"bad value for 'train.population': {population!r}; it must be a positive integer "
                          "(the number of seeds) or null")
    if OmegaConf.select(cfg, "eval.interval") is not None and cfg.eval.interval < 0:
        raise ConfigError("bad value for 'eval.interval': it must be >= 0 (0 disables periodic evaluation)")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def config_fingerprint(cfg: DictConfig | dict) -> tuple[str, dict[str, Any]]:
    """A hash of the parts of the config that must match for a checkpoint to be resumed, and those parts."""
    # unresolved: a key that follows a resumable one by interpolation (IQL's `max_steps: ${train.steps}`)
    # keeps its expression, so extending the budget of a run stays resumable
    data = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig | ListConfig) else cfg
    flat = _flatten(data)
    # a key set to null is the same as an absent one, so adding a new optional key to config.yaml does not
    # make older runs unresumable
    kept = {k: v for k, v in flat.items()
            if v is not None and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)}
    blob = json.dumps(kept, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16], kept


def diff_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two flattened configs (null and absent count as equal)."""
    keys = set(a) | set(b)
    return sorted(k for k in keys if a.get(k) != b.get(k))


def resume_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys that forbid resuming a checkpoint written with the flattened config ``saved``.

    A key the checkpoint lacks counts as equal when the current run has it at its ``config.yaml`` default:
    it was added to rlkit after the checkpoint was written, with a default that keeps the old behaviour
    (e.g. ``eval.protocol: assigned``). Set to anything else, it changes the run and is reported.
    """
    base = root_defaults()
    return [k for k in diff_keys(saved, current)
            if not (k not in saved and k in base and current.get(k) == base[k])]


def algo_block(name: str, context: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``algo`` block of ``configs/algo/<name>.yaml`` resolved against ``context`` (e.g. ``train.steps``,
    ``env.family``), with its per-family defaults and then ``overrides`` applied -- how a preset that wraps
    another algorithm (e.g. ``algo=oper`` with ``algo.base=iql``) builds its base exactly as ``algo=iql`` would."""
    options = group_options("algo")
    if name not in options:
        raise ConfigError(f"unknown base algorithm '{name}'; choose one of: {choices_hint(options)}")
    raw = OmegaConf.load(config_dir() / "algo" / f"{name}.yaml")
    cfg = OmegaConf.merge(OmegaConf.create(context), {"algo": raw.algo})
    overrides = dict(overrides or {})
    apply_family_defaults(cfg, {f"algo.{k}" for k in _flatten(overrides)})
    with open_dict(cfg):
        for key, value in _flatten(overrides).items():
            OmegaConf.update(cfg, f"algo.{key}", value, merge=False)
    return OmegaConf.to_container(cfg.algo, resolve=True)
