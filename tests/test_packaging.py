"""The install puts one name on ``sys.path``: ``rlkit`` (``rlkit.envs``, ``rlkit.algorithms``,
``rlkit.kernels``, ``rlkit.configs``), never the repository's folder names, which belong to other
published packages."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = ("envs", "algorithms", "kernels", "configs")


def test_no_top_level_folder_names_importable_outside_the_checkout(tmp_path):
    code = ("import importlib.util, rlkit.envs, rlkit.algorithms, rlkit.kernels, rlkit.config as c\n"
            f"print([n for n in {FOREIGN!r} if importlib.util.find_spec(n) is not None])\n"
            "print(c.config_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    leaked, config_dir = out.stdout.splitlines()
    assert leaked == "[]", f"top-level packages visible outside the checkout: {leaked}"
    assert (Path(config_dir) / "config.yaml").exists()


def test_wheel_ships_everything_under_rlkit(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("rlkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"rlkit"}, f"wheel has top-level entries {sorted(top)}"
    for needed in ("rlkit/envs/__init__.py", "rlkit/algorithms/offline/td3bc.py", "rlkit/kernels/__init__.py",
                   "rlkit/configs/config.yaml", "rlkit/configs/algo/td3bc.yaml",
                   "rlkit/configs/hydra/launcher/slurm.yaml", "rlkit/data/policies/hopper-medium.pt"):
        assert needed in names, f"{needed} missing from the wheel"


def test_shipped_policies_name_classes_under_the_rlkit_namespace(tmp_path):
    """Every shipped ``.pt`` stores the ``algo_config`` its loader instantiates: its ``_target_`` must resolve from an
    installed rlkit (``rlkit.algorithms...``), not from the checkout's top-level folders -- checked in a process
    started outside the checkout, where ``algorithms`` is not importable."""
    import torch

    policies = sorted((ROOT / "rlkit" / "data" / "policies").glob("*.pt"))
    assert policies
    targets = {p.name: torch.load(p, map_location="cpu", weights_only=False)["algo_config"]["_target_"]
               for p in policies}
    code = ("import json, sys\nfrom hydra.utils import get_class\n"
            "for name, target in json.loads(sys.argv[1]).items():\n    get_class(target)\n")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(targets)], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, (targets, result.stderr[-500:])
