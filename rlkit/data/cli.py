"""``rlkit data info|download|collect``."""

from __future__ import annotations

import json

from rlkit.errors import ConfigError

USAGE = """\
usage:
  rlkit data info PATH_OR_ID [--json]     rows, transitions after the q-learning transform, episodes,
                                          return statistics and provenance of a dataset
  rlkit data download ID                  fetch a D4RL file into $RLKIT_DATA (resumable)
  rlkit data collect env=NAME [steps=N] [seed=S] [policy=RUN_DIR_OR_PT] [out=PATH]
                                          roll out a behaviour policy and write the D4RL layout
  rlkit data check PATH_OR_ID [--env NAME] [--rows N] [--from-observation]
                                          restore sampled rows from infos/qpos,qvel in the dataset's env
                                          (or NAME), apply each row's action and compare the next
                                          observation, reward and terminal with the file (default 2000
                                          rows); exit 0 when the file matches its env, 1 when not
"""


def _kv(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got '{arg}'; see `rlkit data --help`")
        key, value = arg.split("=", 1)
        out[key] = value
    return out


def cmd_data(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    sub, rest = args[0], args[1:]
    if sub == "info":
        from rlkit.data.sources import format_info, info

        as_json = "--json" in rest
        rest = [a for a in rest if a != "--json"]
        if len(rest) != 1:
            raise ConfigError("`rlkit data info` takes one PATH_OR_ID")
        result = info(rest[0])
        print(json.dumps(result, indent=2, default=str) if as_json else format_info(result))
        return 0
    if sub == "download":
        from rlkit.data.sources import download

        if len(rest) != 1:
            raise ConfigError("`rlkit data download` takes one dataset ID")
        print(download(rest[0]))
        return 0
    if sub == "collect":
        from rlkit.config import compose
        from rlkit.data.collect import DEFAULT_STEPS, collect_to_file

        kv = _kv(rest)
        unknown = set(kv) - {"env", "steps", "seed", "policy", "out", "num_envs"}
        if unknown:
            raise ConfigError(f"unknown option '{sorted(unknown)[0]}' for `rlkit data collect`; valid: "
                              "env, steps, seed, policy, out, num_envs")
        if "env" not in kv:
            raise ConfigError("`rlkit data collect` needs env=NAME (e.g. env=hopper-medium)")
        cfg = compose([f"env={kv['env']}"])
        dataset = cfg.env.get("dataset")
        if not dataset:
            raise ConfigError(f"env '{kv['env']}' names no dataset to collect; use a D4RL-style env")
        try:
            steps, seed, num_envs = (int(kv.get("steps", DEFAULT_STEPS)), int(kv.get("seed", 0)),
                                     int(kv.get("num_envs", 8)))
        except ValueError as exc:
            raise ConfigError(f"steps, seed and num_envs must be integers ({exc})") from exc
        path = collect_to_file(str(dataset.id), steps, seed, kv.get("policy"), kv.get("out"), num_envs)
        print(path)
        return 0
    if sub == "check":
        from rlkit.data.check import DEFAULT_ROWS, check, format_check

        from_observation = "--from-observation" in rest
        options, positional = _flags([a for a in rest if a != "--from-observation"], ("--env", "--rows"))
        if len(positional) != 1:
            raise ConfigError("`rlkit data check` takes one PATH_OR_ID (and --env NAME, --rows N, "
                              "--from-observation)")
        try:
            rows = int(options.get("--rows", DEFAULT_ROWS))
        except ValueError as exc:
            raise ConfigError(f"--rows must be an integer ({exc})") from exc
        result = check(positional[0], options.get("--env"), rows, from_observation=from_observation)
        print(format_check(result))
        return 0 if result.matches else 1
    raise ConfigError(f"unknown data command '{sub}'; choose one of: info, download, collect, check")


def _flags(args: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """``--name VALUE`` / ``--name=VALUE`` options among ``args``, and the positional rest."""
    options, positional = {}, []
    it = iter(args)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key in names:
            value = value if eq else next(it, None)
            if value is None:
                raise ConfigError(f"{key} needs a value")
            options[key] = value
        elif arg.startswith("--"):
            raise ConfigError(f"unknown option '{arg}'; valid: {', '.join(names)}")
        else:
            positional.append(arg)
    return options, positional
