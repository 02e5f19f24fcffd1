"""D4RL files: the id table, the raw hdf5 layout, raw-file checks and the q-learning transform.

Files are written in the exact layout of the published D4RL files (``infos/*`` and ``metadata/*`` groups
included) and the transform is checked against hand-computed expectations and against a line-by-line
port of ``d4rl.qlearning_dataset`` plus the IQL/TD3+BC episode split.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from rlkit.data import d4rl, hdf5
from rlkit.errors import ConfigError, DatasetError


def d4rl_arrays(n: int, obs_dim: int = 2, act_dim: int = 1) -> dict[str, np.ndarray]:
    """Arrays of a D4RL v2 locomotion file (keys and dtypes as in the published files); obs[i] = [i, 10 i]."""
    obs = np.stack([np.arange(n) * 10.0**k for k in range(obs_dim)], axis=1).astype(np.float32)
    return {
        "observations": obs,
        "next_observations": obs + 100.0,  # deliberately not obs[i+1]: D4RL's transform ignores this key
        "actions": np.linspace(-1, 1, n * act_dim, dtype=np.float32).reshape(n, act_dim),
        "rewards": np.arange(1, n + 1, dtype=np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
        "infos/qpos": np.zeros((n, 3), np.float32),
        "infos/qvel": np.zeros((n, 3), np.float32),
        "infos/action_log_probs": np.zeros(n, np.float32),
        "metadata/algorithm": "SAC",
        "metadata/iteration": np.int64(100),
        "metadata/policy/fc0/weight": np.ones((4, obs_dim), np.float32),
        "metadata/policy/fc0/bias": np.zeros(4, np.float32),
        "metadata/policy/nonlinearity": "relu",
        "metadata/policy/output_distribution": "tanh_gaussian",
    }


def write(path, arrays) -> str:
    hdf5.write_raw(path, arrays)
    return str(path)


# ------------------------------------------------------------------------------------------ id table
def test_table_covers_every_listed_dataset_with_d4rl_file_names():
    for env in ("hopper", "halfcheetah", "walker2d", "ant"):
        for level in ("random", "medium", "expert", "medium-replay", "full-replay", "medium-expert"):
            spec = d4rl.get_spec(f"{env}-{level}-v2")
            assert spec.max_episode_steps == 1000
            assert spec.filename == f"{env}_{level.replace('-', '_')}-v2.hdf5"
    assert len(d4rl.D4RL_DATASETS) == 24 + 12
    spec = d4rl.get_spec("hopper-medium-replay-v2")
    assert spec.url == "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/hopper_medium_replay-v2.hdf5"
    v0 = d4rl.get_spec("antmaze-umaze-v0")
    assert v0.url.endswith("/ant_maze_new/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse.hdf5")
    assert v0.max_episode_steps == 700
    v2 = d4rl.get_spec("antmaze-large-diverse-v2")
    assert v2.url.endswith(
        "/ant_maze_v2/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5"
    )
    assert v2.max_episode_steps == 1000
    assert d4rl.get_spec("antmaze-medium-play-v0").filename == (
        "Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse.hdf5"
    )
    assert d4rl.get_spec("antmaze-umaze-diverse-v2").max_episode_steps == 700


def test_unknown_id_suggests_close_matches():
    with pytest.raises(ConfigError, match="did you mean hopper-medium-v2"):
        d4rl.get_spec("hopper-medium-v1")


def test_mirror_replaces_base_url(monkeypatch):
    monkeypatch.setenv(d4rl.MIRROR_ENV, "http://127.0.0.1:9/mirror/")
    assert d4rl.get_spec("walker2d-expert-v2").url == "http://127.0.0.1:9/mirror/gym_mujoco_v2/walker2d_expert-v2.hdf5"


# ------------------------------------------------------------------------------------------- hdf5 io
def test_write_read_roundtrip_keeps_the_d4rl_layout(tmp_path):
    arrays = d4rl_arrays(5)
    path = write(tmp_path / "f.hdf5", arrays)
    with h5py.File(path, "r") as fh:  # groups as in real files
        assert set(fh.keys()) == {"observations", "next_observations", "actions", "rewards", "terminals",
                                  "timeouts", "infos", "metadata"}
        assert set(fh["metadata/policy"].keys()) == {"fc0", "nonlinearity", "output_distribution"}
    raw = hdf5.read_raw(path)
    assert set(raw) == set(arrays)
    for key, value in arrays.items():
        if isinstance(value, str):
            assert raw[key] == value
        else:
            np.testing.assert_array_equal(raw[key], value)
    assert raw["terminals"].dtype == bool
    only = hdf5.read_raw(path, ["rewards", "not_there"])
    assert list(only) == ["rewards"]


def test_write_is_atomic(tmp_path):
    path = tmp_path / "f.hdf5"
    write(path, d4rl_arrays(4))
    before = path.read_bytes()
    with pytest.raises(TypeError):
        hdf5.write_raw(path, {"observations": np.zeros((3, 2)), "bad": np.array([object(), 1], dtype=object)})
    assert path.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["f.hdf5"]  # and no temporary file is left behind


def test_write_d4rl_checks_rows_and_stores_provenance(tmp_path):
    arrays = d4rl_arrays(6)
    kwargs = {k: arrays[k] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    path = hdf5.write_d4rl(
        tmp_path / "c.hdf5", **kwargs, infos={"qpos": arrays["infos/qpos"]},
        metadata={"algorithm": "collector"}, provenance={"source": "collected", "env": "x"},
    )
    assert hdf5.read_provenance(path) == {"source": "collected", "env": "x"}
    assert hdf5.list_keys(path)["infos/qpos"] == ((6, 3), "float32")
    kwargs["actions"] = kwargs["actions"][:5]
    with pytest.raises(DatasetError, match="'actions' has 5 rows but 'rewards' has 6"):
        hdf5.write_d4rl(tmp_path / "d.hdf5", **kwargs)


# ------------------------------------------------------------------------------ hand-computed transform
def test_transform_three_episodes_terminal_timeout_and_cut_end(tmp_path):
    # episode A: raw rows 0-2, terminal at 2; B: rows 3-5, timeout at 5; C: rows 6-8 (the file ends)
    arrays = d4rl_arrays(9)
    arrays["terminals"][2] = True
    arrays["timeouts"][5] = True
    ds = d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays), "hopper-medium-v2")

    kept = [0, 1, 2, 3, 4, 6, 7]  # row 5 (timed out) and the last raw row 8 are dropped
    obs = arrays["observations"]
    np.testing.assert_array_equal(ds.observations, obs[kept])
    # next state = obs[i+1], never the file's next_observations
    np.testing.assert_array_equal(ds.next_observations, obs[[1, 2, 3, 4, 5, 7, 8]])
    np.testing.assert_array_equal(ds.actions, arrays["actions"][kept])
    np.testing.assert_array_equal(ds.rewards, [1, 2, 3, 4, 5, 7, 8])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0, 0, 0, 0])
    # row 4's successor obs[5] is not the next kept row's obs[6] -> cut; the last row always closes
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(ds.episode_ids, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.returns, [6, 6, 6, 9, 9, 15, 15])
    np.testing.assert_array_equal(ds.episode_returns, [6, 9, 15])
    assert ds.provenance["raw_rows"] == 9 and ds.provenance["transitions"] == 7
    assert ds.provenance["timeouts_in_file"] is True
    assert ds.provenance["transform"] == "d4rl.qlearning_dataset(terminate_on_end=False)"


def test_transform_terminal_and_timeout_on_the_same_row_skips_it(tmp_path):
    arrays = d4rl_arrays(6)
    arrays["terminals"][2] = True
    arrays["timeouts"][2] = True
    ds = d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))
    np.testing.assert_array_equal(ds.rewards, [1, 2, 4, 5])  # raw rows 0, 1, 3, 4
    np.testing.assert_array_equal(ds.terminals, [0, 0, 0, 0])
    np.testing.assert_array_equal(ds.episode_ids, [0, 0, 1, 1])


def test_old_file_without_timeouts_uses_d4rls_step_counter(tmp_path):
    # max_episode_steps = 3, terminal at raw row 1.  D4RL's counter: rows 0,1 kept (the terminal resets the
    # counter to 0 and the kept row adds 1), row 2 kept (counter 2), row 3 final -> skipped, rows 4,5 kept,
    # row 6 final -> skipped, rows 7,8 kept, row 9 is the last raw row -> dropped.
    arrays = d4rl_arrays(10)
    del arrays["timeouts"]
    arrays["terminals"][1] = True
    ds = d4rl.load_d4rl_file(write(tmp_path / "old.hdf5", arrays), max_episode_steps=3)
    kept = [0, 1, 2, 4, 5, 7, 8]
    np.testing.assert_array_equal(ds.observations, arrays["observations"][kept])
    np.testing.assert_array_equal(ds.terminals, [0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(ds.episode_ids, [0, 0, 1, 2, 2, 3, 3])
    assert ds.provenance["timeouts_in_file"] is False and ds.provenance["max_episode_steps"] == 3


def test_old_antmaze_file_takes_the_registered_time_limit(tmp_path):
    arrays = d4rl_arrays(1500)
    del arrays["timeouts"]
    path = write(tmp_path / "am.hdf5", arrays)
    umaze = d4rl.load_d4rl_file(path, "antmaze-umaze-v0")  # 700 steps: rows 699 and 1399 are final
    assert umaze.size == 1500 - 1 - 2 and umaze.num_episodes == 3
    large = d4rl.load_d4rl_file(path, "antmaze-large-play-v0")  # 1000 steps: row 999 is final
    assert large.size == 1500 - 1 - 1 and large.num_episodes == 2


# ------------------------------------------------------------------- equivalence with a loop port
def qlearning_dataset_loop(dataset: dict, max_episode_steps: int) -> dict:
    """Straight port of ``d4rl.qlearning_dataset(env, dataset, terminate_on_end=False)``."""
    n = dataset["rewards"].shape[0]
    obs_, next_obs_, action_, reward_, done_ = [], [], [], [], []
    use_timeouts = "timeouts" in dataset
    episode_step = 0
    for i in range(n - 1):
        obs = dataset["observations"][i].astype(np.float32)
        new_obs = dataset["observations"][i + 1].astype(np.float32)
        action = dataset["actions"][i].astype(np.float32)
        reward = dataset["rewards"][i].astype(np.float32)
        done_bool = bool(dataset["terminals"][i])
        final_timestep = dataset["timeouts"][i] if use_timeouts else episode_step == max_episode_steps - 1
        if final_timestep:
            episode_step = 0
            continue
        if done_bool or final_timestep:
            episode_step = 0
        obs_.append(obs)
        next_obs_.append(new_obs)
        action_.append(action)
        reward_.append(reward)
        done_.append(done_bool)
        episode_step += 1
    return {"observations": np.array(obs_), "actions": np.array(action_),
            "next_observations": np.array(next_obs_), "rewards": np.array(reward_),
            "terminals": np.array(done_)}


def iql_dones_float(q: dict) -> np.ndarray:
    """The episode split of the IQL / TD3+BC / OPER code: terminal or ||s[i+1] - s'[i]|| > 1e-6; last = 1."""
    dones = np.zeros_like(q["rewards"])
    for i in range(len(dones) - 1):
        gap = np.linalg.norm(q["observations"][i + 1] - q["next_observations"][i]) > 1e-6
        dones[i] = 1 if (gap or q["terminals"][i] == 1.0) else 0
    dones[-1] = 1
    return dones


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_transform_equals_loop_port_on_random_files(seed, tmp_path):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 120))
    obs_dim = int(rng.integers(1, 4))
    arrays = {
        # a few repeated values so that consecutive observations sometimes coincide across a skipped row
        "observations": rng.integers(0, 3, size=(n, obs_dim)).astype(np.float32) * rng.choice([1.0, 1e-7]),
        "actions": rng.normal(size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < rng.choice([0.0, 0.05, 0.3]),
    }
    with_timeouts = seed % 2 == 0
    if with_timeouts:
        arrays["timeouts"] = rng.random(n) < rng.choice([0.0, 0.1, 0.4])
    max_steps = int(rng.integers(2, 9))
    path = write(tmp_path / "r.hdf5", arrays)

    ref = qlearning_dataset_loop(d4rl.read_d4rl_file(path), max_steps)
    if len(ref["rewards"]) == 0:
        with pytest.raises(DatasetError, match="no transitions left"):
            d4rl.load_d4rl_file(path, max_episode_steps=max_steps)
        return
    ds = d4rl.load_d4rl_file(path, max_episode_steps=max_steps)
    for key in ("observations", "actions", "next_observations", "rewards"):
        np.testing.assert_array_equal(getattr(ds, key), ref[key].reshape(getattr(ds, key).shape), err_msg=key)
    np.testing.assert_array_equal(ds.terminals, ref["terminals"])
    np.testing.assert_array_equal(ds.done_float, iql_dones_float(ref).astype(bool))


def test_counter_walk_matches_loop_on_long_random_terminal_patterns():
    rng = np.random.default_rng(0)
    for max_steps in (2, 3, 7, 1000):
        terminals = rng.random(5000) < 0.002 * max_steps / 10
        loop = np.zeros(len(terminals), bool)
        e = 0
        for i, t in enumerate(terminals):
            if e == max_steps - 1:
                loop[i], e = True, 0
                continue
            e = 0 if t else e
            e += 1
        np.testing.assert_array_equal(d4rl.final_timesteps_from_counter(terminals, max_steps), loop)


def test_episode_cuts_chunking_is_invisible():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(1000, 3)).astype(np.float32)
    nxt = np.roll(obs, -1, axis=0)
    nxt[[10, 500, 777]] += 1e-3
    whole = d4rl.episode_cuts(obs, nxt)
    assert np.flatnonzero(whole).tolist() == [10, 500, 777, 999]
    np.testing.assert_array_equal(d4rl.episode_cuts(obs, nxt, chunk=7), whole)


# -------------------------------------------------------------------------------------- raw checks
def test_missing_key_is_named_with_the_keys_present(tmp_path):
    arrays = d4rl_arrays(5)
    del arrays["actions"]
    with pytest.raises(DatasetError, match=r"no key 'actions' \(keys present: .*observations.*rewards"):
        d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))


def test_mismatched_lengths_are_named(tmp_path):
    arrays = d4rl_arrays(10)
    arrays["actions"] = arrays["actions"][:9]
    with pytest.raises(DatasetError, match="dataset key 'actions' has 9 rows but 'rewards' has 10"):
        d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))


@pytest.mark.parametrize("key", ["observations", "actions", "rewards"])
def test_nan_is_refused_naming_the_key_and_row(tmp_path, key):
    arrays = d4rl_arrays(8)
    arrays[key] = arrays[key].copy()
    arrays[key][3] = np.nan
    with pytest.raises(DatasetError, match=f"dataset key '{key}' holds NaN or inf \\(first at row 3\\)"):
        d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))


def test_wrong_rank_is_refused(tmp_path):
    arrays = d4rl_arrays(8)
    arrays["rewards"] = np.zeros((8, 2), np.float32)
    with pytest.raises(DatasetError, match=r"'rewards' .* must have shape \(N,\) or \(N, 1\), got \(8, 2\)"):
        d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))
    arrays = d4rl_arrays(8)
    arrays["observations"] = np.zeros(8, np.float32)
    with pytest.raises(DatasetError, match=r"'observations' .* must have shape \(N, dim\)"):
        d4rl.load_d4rl_file(write(tmp_path / "g.hdf5", arrays))


def test_column_vectors_are_squeezed_like_d4rl(tmp_path):
    arrays = d4rl_arrays(6)
    arrays["rewards"] = arrays["rewards"][:, None]
    arrays["terminals"] = arrays["terminals"][:, None]
    ds = d4rl.load_d4rl_file(write(tmp_path / "f.hdf5", arrays))
    np.testing.assert_array_equal(ds.rewards, [1, 2, 3, 4, 5])


def test_truncated_file_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    write(path, d4rl_arrays(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"not a readable HDF5 file \(truncated download\?\).*"
                                           r"rlkit data download hopper-medium-v2"):
        d4rl.load_d4rl_file(path, "hopper-medium-v2")
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        d4rl.load_d4rl_file(path)


def test_too_few_rows_and_nothing_kept_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="at least 2"):
        d4rl.load_d4rl_file(write(tmp_path / "one.hdf5", {k: v[:1] for k, v in d4rl_arrays(1).items()
                                                          if not k.startswith("metadata")}))
    arrays = d4rl_arrays(3)
    arrays["timeouts"][:] = True
    with pytest.raises(DatasetError, match="no transitions left after the q-learning transform"):
        d4rl.load_d4rl_file(write(tmp_path / "none.hdf5", arrays))
