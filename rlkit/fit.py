"""Which environments an algorithm fits, decided from declarations alone (no env is built).

Two sources of requirements, checked against the env config's metadata (``env.dataset``, ``env.suite``,
``env.observation``, ``env.action``; see :mod:`rlkit.envs.catalog`):

* the **regime** decides what data the run needs: ``offline`` and ``offline_to_online`` read a dataset
  (``env.dataset`` set),
  ``pretrain`` and ``finetune`` run the URLB protocol (``env.suite: urlb``),
  ``online`` takes any env;
* the **algorithm class** declares the observations (``observation``: vector | pixels | any) and actions
  (``action``: continuous | discrete | any) its networks handle, as class attributes of
  :class:`rlkit.algorithm.Algorithm`.

A pair that does not fit is refused with one line that names envs which do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlkit.errors import ConfigError

OBSERVATIONS = ("vector", "pixels")
ACTIONS = ("continuous", "discrete")
DATA_REGIMES = ("offline", "offline_to_online")
URLB_REGIMES = ("pretrain", "finetune")
EXAMPLES = 4  # env names shown in a refusal


def _requirements(algo_cls: type, regime: str) -> list[tuple[str, str, Any]]:
    """``(description, env key, wanted)`` triples; ``wanted`` is a value or the marker ``"set"``."""
    needs: list[tuple[str, str, Any]] = []
    if regime in DATA_REGIMES:
        needs.append(("a dataset", "dataset", "set"))
    elif regime in URLB_REGIMES:
        needs.append(("URLB", "suite", "urlb"))
    if algo_cls.observation != "any":
        text = "pixel" if algo_cls.observation == "pixels" else algo_cls.observation
        needs.append((f"{text} observations", "observation", algo_cls.observation))
    if algo_cls.action != "any":
        needs.append((f"{algo_cls.action} actions", "action", algo_cls.action))
    return needs


def _unmet(needs: list[tuple[str, str, Any]], env: Mapping[str, Any]) -> list[str]:
    out = []
    for text, key, wanted in needs:
        value = env.get(key)
        if (value is None) if wanted == "set" else (value != wanted):
            out.append(text)
    return out


def _check_metadata(env: Mapping[str, Any]) -> None:
    name = env.get("name")
    for key, choices in (("observation", OBSERVATIONS), ("action", ACTIONS)):
        if env.get(key) not in choices:
            raise ConfigError(f"env '{name}' declares env.{key}={env.get(key)!r}; set it to one of "
                              f"{' | '.join(choices)} in its config (configs/env/{name}.yaml or rlkit.envs.catalog)")


def _env_blocks() -> dict[str, dict[str, Any]]:
    """``{name: env block}`` of every configured env: catalog rows first (in table order), then YAML files."""
    from rlkit.config import group_nodes

    out = {}
    for name, node in group_nodes("env").items():
        env = node.get("env") if isinstance(node, DictConfig) else None
        out[name] = OmegaConf.to_container(env, resolve=False) if isinstance(env, DictConfig) else {}
    return out


def _patterns(names: list[str]) -> str:
    """Names grouped by their first dash-separated part: ``urlb-walker, urlb-jaco`` -> ``urlb-*``,
    ``hopper, hopper-medium`` -> ``hopper*``; a name alone in its group stays as it is."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("-", 1)[0], []).append(name)
    return ", ".join(group[0] if len(group) == 1 else f"{prefix}*" if prefix in group else f"{prefix}-*"
                     for prefix, group in groups.items())


def _examples(names: list[str]) -> list[str]:
    """A few names, one per prefix first (hopper-..., antmaze-..., ...), then in table order."""
    picked: list[str] = []
    prefixes: set[str] = set()
    for name in names:
        prefix = name.split("-", 1)[0]
        if prefix not in prefixes:
            prefixes.add(prefix)
            picked.append(name)
    picked += [n for n in names if n not in picked]
    return picked[:EXAMPLES]


def _describe(needs: list[tuple[str, str, Any]]) -> str:
    """``a URLB env with continuous actions``, ``an env with a dataset, vector observations and ...``."""
    base = "a URLB env" if any(key == "suite" for _, key, _ in needs) else "an env"
    features = [text for text, key, _ in needs if key != "suite"]
    if not features:
        return base
    joined = features[0] if len(features) == 1 else f"{', '.join(features[:-1])} and {features[-1]}"
    return f"{base} with {joined}"


def fitting_envs(algo_cls: type, regime: str) -> list[str]:
    """Names of the configured envs an algorithm can train on in a regime."""
    needs = _requirements(algo_cls, regime)
    return [name for name, env in _env_blocks().items() if not _unmet(needs, env)]


def check_fit(algo_cls: type, regime: str, env_cfg: Mapping[str, Any] | DictConfig,
              algo_name: str | None = None) -> None:
    """Refuse, in one :class:`ConfigError` line naming envs that fit, an algorithm/regime/env that do not fit."""
    env = OmegaConf.to_container(env_cfg, resolve=True) if isinstance(env_cfg, DictConfig) else dict(env_cfg)
    _check_metadata(env)
    needs = _requirements(algo_cls, regime)
    unmet = _unmet(needs, env)
    if not unmet:
        return
    name = algo_name or algo_cls.__name__.lower()
    fits = fitting_envs(algo_cls, regime)
    wanted = _describe(needs)
    if not fits:
        raise ConfigError(f"algo={name} (regime {regime}) needs {wanted}, which env={env.get('name')} lacks "
                          f"({', '.join(unmet)}), and no configured env has it")
    shown = _examples(fits)
    more = ", ..." if len(fits) > len(shown) else ""
    raise ConfigError(f"algo={name} (regime {regime}) needs {wanted}, which env={env.get('name')} lacks: use "
                      f"{', '.join(shown)}{more} ({len(fits)} envs: {_patterns(fits)}; `rlkit list envs`)")


def check_run_fit(cfg: DictConfig) -> None:
    """:func:`check_fit` for a composed run config: the class of ``cfg.algo._target_``, the regime the run
    uses (``regime=...`` or the algorithm's default) and ``cfg.env``; and the add-on (``addon=NAME``) against
    the algorithm.  Every refusal here is decided by the config alone, before any data is loaded or collected."""
    from rlkit.regimes.base import algorithm_class, algorithm_regime, check_addon

    check_addon(cfg, algorithm_class(cfg))
    check_fit(algorithm_class(cfg), algorithm_regime(cfg), cfg.env, algo_name=cfg.algo.get("name"))
