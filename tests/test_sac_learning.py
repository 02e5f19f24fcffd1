"""Learning check: SAC on Pendulum-v1 clearly beats a random policy within the CI budget.

A uniform random policy scores about -1200 on Pendulum; SAC's paper settings (one update per step,
batch 256, 2x256 MLPs) reach about -150 after ~3,000 updates on this seed.
"""

from rlkit import trainer

RANDOM_POLICY_RETURN = -1200.0


def test_sac_learns_pendulum(compose_cfg, tmp_path):
    cfg = compose_cfg("algo=sac", "env=pendulum", "train.steps=6000", "train.warmup_steps=1000",
                      "eval.interval=1000", "eval.episodes=5", "checkpoint.interval=0", f"run_dir={tmp_path}")
    summary = trainer.run(cfg)
    assert summary["best_score"] > -400.0, summary
    assert summary["final_return"] > RANDOM_POLICY_RETURN + 400, summary["final_returns"]
