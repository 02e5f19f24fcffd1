"""Populations (``train.population=S``): a population of one is the ordinary run bit for bit (CPU); each member
of a larger population stays within floating-point tolerance of its single run; a population resumes exactly;
algorithms and settings that cannot join are refused in one line."""

import pytest
import torch

from rlkit import trainer
from rlkit.checkpoint import load_latest_intact
from rlkit.errors import ConfigError
from rlkit.regimes.offline import OfflineRegime
from tests.helpers import metric_records


def overrides(path, algo="td3bc", steps=100):
    hidden = ["algo.actor_hidden=[32,32]", "algo.critic_hidden=[32,32]"] if algo == "cql" else ["algo.hidden=[32,32]"]
    return [f"algo={algo}", "env=hopper-random", f"env.dataset.path={path}", "env.dataset.source=file",
            f"train.steps={steps}", "train.log_interval=25", "eval.interval=50", "eval.episodes=2",
            "eval.num_envs=2", "checkpoint.interval=50", *hidden, "train.batch_size=32", "num_threads=1"]


def final_algo_state(run_dir):
    return load_latest_intact(run_dir / "checkpoints", map_location="cpu")[1]["algo"]


def tensors(state, prefix=""):
    """Every tensor of a (nested) state dict, by path."""
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(key)] = value
        elif isinstance(value, dict):
            out.update(tensors(value, f"{prefix}{key}."))
    return out


def test_population_of_one_is_the_ordinary_run_bit_for_bit(compose_cfg, tmp_path, hopper_random_file):
    single = trainer.run(compose_cfg(*overrides(hopper_random_file), "seed=3", f"run_dir={tmp_path / 'single'}"))
    pop = trainer.run(compose_cfg(*overrides(hopper_random_file), "seed=3", "train.population=1",
                                  f"run_dir={tmp_path / 'pop'}"))
    member = tmp_path / "pop" / "seed_0"
    assert pop["members"][0]["seed"] == 3 and pop["members"][0]["run_dir"] == str(member)
    assert metric_records(tmp_path / "single") == metric_records(member)
    assert single["final_returns"] == pop["members"][0]["final_returns"]
    a, b = tensors(final_algo_state(tmp_path / "single")), tensors(final_algo_state(member))
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_oper_preset_trains_its_base_as_a_population(compose_cfg, tmp_path, hopper_random_file):
    """``algo=oper`` (the README's main job) stacks its base: a population of one is its ordinary run, bit for bit."""
    common = ["algo=oper", "env=hopper-random", f"env.dataset.path={hopper_random_file}", "env.dataset.source=file",
              "train.steps=60", "train.log_interval=20", "eval.interval=30", "eval.episodes=1", "eval.num_envs=1",
              "checkpoint.interval=30", "+algo.base_params.hidden=[32,32]", "train.batch_size=32", "num_threads=1"]
    trainer.run(compose_cfg(*common, f"run_dir={tmp_path / 'single'}"))
    trainer.run(compose_cfg(*common, "train.population=1", f"run_dir={tmp_path / 'pop'}"))
    member = tmp_path / "pop" / "seed_0"
    assert metric_records(tmp_path / "single") == metric_records(member)
    a, b = tensors(final_algo_state(tmp_path / "single")), tensors(final_algo_state(member))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="algo.base=bc"):
        trainer.run(compose_cfg(*common[:-4], "algo.base=bc", "train.population=2", f"run_dir={tmp_path / 'bc'}"))


@pytest.mark.parametrize("algo,extra", [("td3bc", []), ("iql", []), ("awac", []), ("cql", ["algo.lagrange=true"]),
                                        ("td3bc", ["sampler=oper_r"]), ("iql", ["sampler=per"])])
def test_each_member_stays_close_to_its_single_run(compose_cfg, tmp_path, hopper_random_file, algo, extra):
    """2 members vs 2 single runs (seeds 5, 6) after 100 updates: same data order and noise, so parameters
    equal to float32 rounding (the stacked kernels sum in other orders) and Adam's moments to 5e-3 of their
    largest entry (gradients amplify the rounding: CQL's log-sum-exp penalty most)."""
    base = [*overrides(hopper_random_file, algo), *extra, "eval.interval=0"]
    pop = trainer.run(compose_cfg(*base, "seed=5", "train.population=2", f"run_dir={tmp_path / 'pop'}"))
    assert [m["seed"] for m in pop["members"]] == [5, 6]
    for k in range(2):
        trainer.run(compose_cfg(*base, f"seed={5 + k}", f"run_dir={tmp_path / f'single{k}'}"))
        a = tensors(final_algo_state(tmp_path / f"single{k}"))
        b = tensors(final_algo_state(tmp_path / "pop" / f"seed_{k}"))
        assert a.keys() == b.keys()
        for key in a:
            atol = 1e-5 + (5e-3 * a[key].abs().max().item() if "_opt." in key else 0.0)
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=atol, msg=f"member {k}: {key}")
        records_a, records_b = metric_records(tmp_path / f"single{k}"), metric_records(tmp_path / "pop" / f"seed_{k}")
        assert [r["step"] for r in records_a] == [r["step"] for r in records_b]
    # the members differ from each other (their own seeds, data and noise)
    m0, m1 = (tensors(final_algo_state(tmp_path / "pop" / f"seed_{k}")) for k in (0, 1))
    assert not torch.equal(m0["critic.net.0.weight"], m1["critic.net.0.weight"])


def test_population_resume_is_exact(compose_cfg, tmp_path, hopper_random_file, monkeypatch):
    base = [*overrides(hopper_random_file, "iql", steps=150), "seed=1", "train.population=2"]
    trainer.run(compose_cfg(*base, f"run_dir={tmp_path / 'full'}"))
    original = OfflineRegime.next_batch

    def next_batch(self):  # stopped as a step begins, before member 0 draws its batch
        if self.step == 87 and self.cfg.seed == 1:
            raise KeyboardInterrupt
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(OfflineRegime, "next_batch", next_batch)
        with pytest.raises(KeyboardInterrupt):
            trainer.run(compose_cfg(*base, f"run_dir={tmp_path / 'cut'}"))
    resumed = trainer.run(compose_cfg(*base, f"run_dir={tmp_path / 'cut'}", "resume=true"))
    assert [m["steps"] for m in resumed["members"]] == [150, 150]
    for k in range(2):
        assert metric_records(tmp_path / "full" / f"seed_{k}") == metric_records(tmp_path / "cut" / f"seed_{k}")
        a = tensors(final_algo_state(tmp_path / "full" / f"seed_{k}"))
        b = tensors(final_algo_state(tmp_path / "cut" / f"seed_{k}"))
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_algorithms_and_settings_that_cannot_join_are_refused(compose_cfg, tmp_path, hopper_random_file):
    with pytest.raises(ConfigError, match="algo=bc cannot train as a population"):
        trainer.run(compose_cfg(*overrides(hopper_random_file, "bc"), "train.population=2",
                                f"run_dir={tmp_path / 'bc'}"))
    with pytest.raises(ConfigError, match="algo.dropout"):
        trainer.run(compose_cfg(*overrides(hopper_random_file, "iql"), "algo.dropout=0.1", "train.population=2",
                                f"run_dir={tmp_path / 'drop'}"))
    with pytest.raises(ConfigError, match="train.population"):
        compose_cfg(*overrides(hopper_random_file), "train.population=0")
