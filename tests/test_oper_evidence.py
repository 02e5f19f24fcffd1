"""Evidence that OPER-R helps its base on mixed-quality data (slow: about 15 minutes per task on one core).

Data: the shipped medium-replay buffers (the replay of rlkit's SAC runs up to their medium policies, from
random-policy returns up to medium).  TD3+BC with uniform batches vs the ``algo=oper`` preset (TD3+BC on
OPER-R resampled batches), 10k gradient steps, 3 seeds each, final evaluation of 10 episodes.
Measured: halfcheetah 11.3 -> 26.7, hopper 20.5 -> 21.1 (means over seeds).
"""

import numpy as np
import pytest

from rlkit import trainer


@pytest.mark.slow
@pytest.mark.parametrize("task", ["hopper", "halfcheetah"])
def test_oper_r_improves_td3bc_on_medium_replay(compose_cfg, tmp_path, task):
    from rlkit.data.collect import POLICY_DIR

    data = POLICY_DIR / f"{task}-medium-replay.hdf5"
    scores = {}
    for algo in ("td3bc", "oper"):
        scores[algo] = []
        for seed in range(3):
            cfg = compose_cfg(f"algo={algo}", f"env={task}-medium-replay", f"env.dataset.path={data}",
                              "env.dataset.source=file", f"seed={seed}", "train.steps=10000",
                              "eval.interval=2000", "eval.episodes=10", "checkpoint.interval=0",
                              f"run_dir={tmp_path / algo / str(seed)}")
            scores[algo].append(trainer.run(cfg)["final_normalized_score"])
    print({k: [round(x, 1) for x in v] for k, v in scores.items()})
    assert np.mean(scores["oper"]) >= np.mean(scores["td3bc"]), scores
