"""The fidelity harness's pure parts (bench/fidelity/core.py, __main__.py): comparisons, verdicts, the JSON,
reference imports, branch exports and the update driver.  The adapters themselves need the authors' clones and
run by hand (``python -m bench.fidelity --ref NAME=PATH``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench.fidelity import __main__ as cli
from bench.fidelity.core import (
    Adapter,
    Case,
    branch_tree,
    difference,
    format_table,
    import_reference,
    reference_imports,
    run_adapter,
    verdict,
    write_json,
)


def test_difference_is_relative_to_the_reference_scale():
    ours, theirs = np.array([1.0, 2.0, 4.0 + 4e-6]), np.array([1.0, 2.0, 4.0])
    max_abs, max_rel = difference(ours, theirs)
    assert max_abs == pytest.approx(4e-6)
    assert max_rel == pytest.approx(1e-6)
    assert verdict(max_rel, 2e-6) == "equal" and verdict(max_rel, 5e-7) == "differs"


def test_difference_walks_structures_and_accepts_column_vectors():
    ours = {"q": [torch.ones(3), torch.zeros(2, 1)], "v": torch.tensor(2.0, dtype=torch.float64)}
    theirs = {"q": [np.ones(3), np.zeros(2)], "v": 2.5}
    max_abs, max_rel = difference(ours, theirs)
    assert max_abs == pytest.approx(0.5) and max_rel == pytest.approx(0.2)
    with pytest.raises(ValueError, match="different leaves"):
        difference({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="shape"):
        difference(np.ones(3), np.ones(4))


def test_difference_of_non_finite_values():
    assert difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))[0] == 0.0
    assert difference(np.array([np.inf]), np.array([1.0]))[1] == float("inf")


class LinearRegressionAdapter(Adapter):
    """rlkit side: a torch SGD step on ``0.5 |Xw - y|^2 / n``; reference side: the closed-form gradient in numpy,
    optionally with a learning rate that is off by ``skew`` (so the driver must report ``differs``)."""

    name = "toy"
    reference = "closed-form/sgd"

    def __init__(self, skew: float = 0.0):
        super().__init__(".", {})
        self.skew = skew

    def commit(self):
        return "none"

    def cases(self):
        return [Case("toy", switch="algo.lr=0.1")]

    def build(self, case):
        self.w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        self.opt = torch.optim.SGD([self.w], lr=0.1)

    def transplant(self):
        self.w_ref = self.w.detach().numpy().copy()

    def draws(self, step):
        rng = np.random.default_rng(step)
        x = rng.normal(size=(8, 3))
        return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5])}

    def compare(self, draws):
        x, y = torch.as_tensor(draws["x"]), torch.as_tensor(draws["y"])
        loss = 0.5 * ((x @ self.w - y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        grad = self.w.grad.clone()
        self.opt.step()
        ref_grad = draws["x"].T @ (draws["x"] @ self.w_ref - draws["y"]) / len(draws["y"])
        ref_loss = 0.5 * np.mean((draws["x"] @ self.w_ref - draws["y"]) ** 2)
        self.w_ref = self.w_ref - (0.1 + self.skew) * ref_grad
        return {"loss": (loss, ref_loss), "grad": (grad, ref_grad), "params": (self.w, self.w_ref)}


def test_run_adapter_reports_the_chosen_updates():
    rows = run_adapter(LinearRegressionAdapter(), updates=(1, 5))
    assert [r.quantity for r in rows] == ["u1/loss", "u1/grad", "u1/params", "u5/loss", "u5/grad", "u5/params"]
    assert all(r.verdict == "equal" and r.switch == "algo.lr=0.1" for r in rows)
    skewed = run_adapter(LinearRegressionAdapter(skew=1e-3), updates=(1, 5))
    by_name = {r.quantity: r.verdict for r in skewed}
    assert by_name["u1/loss"] == "equal" and by_name["u1/params"] == "differs" and by_name["u5/loss"] == "differs"
    assert format_table(skewed).endswith("2 of 6 quantities equal")
    assert format_table(rows).endswith("6 of 6 quantities equal")


def test_json_rows_have_the_documented_keys(tmp_path):
    rows = run_adapter(LinearRegressionAdapter(), updates=(1,))
    write_json(rows, tmp_path / "out" / "fidelity.json")
    data = json.loads((tmp_path / "out" / "fidelity.json").read_text())
    assert {"method", "reference", "commit", "quantity", "max_abs", "max_rel", "verdict", "switch"} <= set(
        data["rows"][0])
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_reference_imports_isolate_shared_module_names_and_stub_logging(tmp_path):
    for name, value in (("a", 1), ("b", 2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "utils.py").write_text(f"X = {value}\n")
        (tmp_path / name / "learner.py").write_text(
            "import utils\nimport fidelity_missing_logger as log\nlog.init(project='x')\nY = utils.X * 10\n")
    first = import_reference(tmp_path / "a", "learner", stubs=["fidelity_missing_logger"], isolate=["utils"])
    second = import_reference(tmp_path / "b", "learner", stubs=["fidelity_missing_logger"], isolate=["utils"])
    assert (first.Y, second.Y) == (10, 20)
    assert "fidelity_missing_logger" not in sys.modules and "learner" not in sys.modules
    with reference_imports(tmp_path / "a", isolate=["utils"]):
        import utils  # noqa: F401  (the reference's own module, not another one's)

        assert sys.modules["utils"].X == 1


def test_branch_tree_exports_another_branch(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    (repo / "algo.py").write_text("BRANCH = 'main'\n")
    git("add", "-A")
    git("commit", "-qm", "main")
    git("checkout", "-qb", "td3")
    (repo / "algo.py").write_text("BRANCH = 'td3'\n")
    git("commit", "-qam", "td3")
    git("checkout", "-q", "main")
    out = branch_tree(repo, "td3")
    assert (out / "algo.py").read_text() == "BRANCH = 'td3'\n"
    assert (repo / "algo.py").read_text() == "BRANCH = 'main'\n"
    with pytest.raises(ValueError, match="no branch 'iql'"):
        branch_tree(repo, "iql")


def test_cli_refuses_bad_refs_in_one_line(tmp_path, capsys):
    assert cli.main(["--ref", "nonsense"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert cli.main(["--ref", f"td3bc={tmp_path / 'missing'}"]) == 2
    assert "clone the authors' repository" in capsys.readouterr().err
    assert cli.main(["--ref", f"no_such_reference={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no adapter uses --ref no_such_reference" in err
