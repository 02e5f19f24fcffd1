"""Learning checks for the offline algorithms on a small locally collected hopper dataset.

The dataset: 20k steps of rlkit's shipped hopper "medium" behaviour policy (SAC, about a third of D4RL's
expert return), collected in the D4RL layout.  TD3+BC must end at least as high as the behaviour policy's
own normalized score and IQL must reach it; CQL and AWAC (reduced widths to fit CI) must improve clearly
over their initial score.  Every run is seeded and CPU-deterministic.
"""

import pytest

from rlkit import trainer
from rlkit.evaluation.scores import normalize


@pytest.fixture(scope="module")
def hopper_medium(tmp_path_factory):
    from rlkit.data.collect import collect_to_file
    from rlkit.data.hdf5 import read_provenance

    path = collect_to_file("hopper-medium-v2", steps=20_000, seed=0, num_envs=8,
                           out=tmp_path_factory.mktemp("data") / "hopper-medium-20k.hdf5")
    behaviour = float(normalize("d4rl", "hopper", read_provenance(path)["episode_return_mean"]))
    return path, behaviour


def train(compose_cfg, tmp_path, path, algo, steps, *overrides):
    cfg = compose_cfg(f"algo={algo}", "env=hopper-medium", f"env.dataset.path={path}", "env.dataset.source=file",
                      f"train.steps={steps}", "eval.interval=1000", "eval.episodes=5", "eval.final_episodes=10",
                      "checkpoint.interval=0", f"run_dir={tmp_path / algo}", *overrides)
    return trainer.run(cfg)


def test_td3bc_matches_the_behaviour_policy(compose_cfg, tmp_path, hopper_medium):
    path, behaviour = hopper_medium
    summary = train(compose_cfg, tmp_path, path, "td3bc", 6000)
    assert summary["final_normalized_score"] >= behaviour, (summary["final_normalized_score"], behaviour)


def test_iql_reaches_the_behaviour_policy(compose_cfg, tmp_path, hopper_medium):
    path, behaviour = hopper_medium
    summary = train(compose_cfg, tmp_path, path, "iql", 6000, "eval.episodes=10")
    assert summary["best_score"] >= behaviour, (summary["best_score"], behaviour)


@pytest.mark.parametrize("algo, overrides", [
    ("cql", ["algo.actor_hidden=[64,64]", "algo.critic_hidden=[64,64]", "algo.actor_lr=3e-4"]),
    ("awac", ["algo.hidden=[64,64]"]),
])
def test_cql_and_awac_improve_over_their_initial_score(compose_cfg, tmp_path, hopper_medium, algo, overrides):
    path, _ = hopper_medium
    summary = train(compose_cfg, tmp_path, path, algo, 3000, "eval.at_start=true", "train.batch_size=128",
                    *overrides)
    from rlkit.logger import read_metrics

    scores = [r["eval/normalized_score"] for r in read_metrics(tmp_path / algo / "metrics.jsonl")
              if "eval/normalized_score" in r]
    assert summary["final_normalized_score"] > scores[0] + 10.0, scores
