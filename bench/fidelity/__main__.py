"""``python -m bench.fidelity --ref NAME=PATH [--ref NAME=PATH ...] [--json FILE]``: rlkit against its
authors' released code, update for update (see :mod:`bench.fidelity.core`).

PATH is a local clone of the authors' repository (never vendored into rlkit).  Only the adapters whose
references are given run; a ``--ref`` whose name no adapter uses, or whose path is missing, is refused in
one line (exit 2).  Exit status: 0 when every compared quantity is ``equal``, 1 when any ``differs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.fidelity.core import format_table, run_adapter, write_json
from bench.fidelity.registry import ADAPTERS, adapter_class


def parse_refs(items: list[str]) -> dict[str, Path]:
    """``["td3bc=/tmp/TD3_BC", ...]`` -> ``{"td3bc": Path("/tmp/TD3_BC")}``; raises ValueError with one line."""
    refs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--ref takes NAME=PATH, got '{item}'")
        if not Path(path).is_dir():
            raise ValueError(f"--ref {name}: '{path}' is not a folder; clone the authors' repository there first")
        refs[name] = Path(path)
    return refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", action="append", default=[], metavar="NAME=PATH",
                        help=f"a reference clone; names: {', '.join(sorted(ADAPTERS)) or '(none registered)'}")
    parser.add_argument("--json", type=Path, help="write the rows as JSON to this file")
    parser.add_argument("--updates", default="1,50", help="updates whose quantities are reported (default 1,50)")
    parser.add_argument("--method", action="append", help="check only these JSON methods (repeatable)")
    args = parser.parse_args(argv)
    try:
        refs = parse_refs(args.ref)
        updates = tuple(sorted({int(u) for u in args.updates.split(",")}))
        if not updates or updates[0] < 1:
            raise ValueError(f"--updates takes positive update counts, got '{args.updates}'")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    helpers = {needed for name in refs if name in ADAPTERS for needed in adapter_class(name).needs}
    unknown = sorted(set(refs) - set(ADAPTERS) - helpers)
    if unknown or not refs:
        print(f"error: no adapter uses --ref {', '.join(unknown) or '(none given)'}; "
              f"choose from {', '.join(sorted(ADAPTERS))}", file=sys.stderr)
        return 2
    rows = []
    for name in sorted(set(refs) & set(ADAPTERS)):
        cls = adapter_class(name)
        missing = [n for n in cls.needs if n not in refs]
        if missing:
            print(f"error: --ref {name} also needs --ref {', '.join(f'{m}=PATH' for m in missing)}", file=sys.stderr)
            return 2
        rows += run_adapter(cls(refs[name], refs), updates, args.method)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
        print(f"wrote {args.json}")
    return 0 if all(r.verdict == "equal" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
