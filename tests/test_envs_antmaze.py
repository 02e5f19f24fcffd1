"""D4RL's AntMaze evaluation env rebuilt on MuJoCo 3, checked against D4RL's formulas: maze frame, model
constants, action scaling, goal distribution, sparse reward with termination, walls, time limits, resume."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from rlkit import envs
from rlkit.envs import antmaze
from rlkit.envs.state import get_env_state, set_env_state
from rlkit.errors import EnvError


def launched(env, xy, velocity, steps=15):
    """Put the torso at ``xy`` with a horizontal velocity, then let it go with zero torques."""
    inner = env.unwrapped
    inner.data.qpos[:2] = xy
    inner.data.qvel[:] = 0.0
    inner.data.qvel[:2] = velocity
    mujoco.mj_forward(inner.model, inner.data)
    return np.array([env.step(np.zeros(8))[0][:2] for _ in range(steps)])


@pytest.mark.parametrize("maze", list(antmaze.MAZES))
def test_maze_frame_and_model_constants_follow_d4rl(maze):
    env = antmaze.D4RLAntMazeEnv(maze)
    layout = antmaze.MAZES[maze]
    (ri, rj), (gi, gj) = antmaze.cell_of(layout, "r"), antmaze.cell_of(layout, "g")
    model = env.model
    walls = {}
    for g in range(model.ngeom):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g)
        if name and name.startswith("block_"):
            walls[name] = (model.geom_pos[g].copy(), model.geom_size[g].copy())
    cells = [(i, j) for i, row in enumerate(layout) for j, v in enumerate(row) if v == 1]
    assert len(walls) == len(cells)
    for i, j in cells:  # D4RL: block (i, j) at (j s - torso_x, i s - torso_y, h/2 s), half-size (s/2, s/2, h/2 s)
        pos, size = walls[f"block_{i}_{j}"]
        np.testing.assert_allclose(pos, [4.0 * (j - rj), 4.0 * (i - ri), 1.0])
        np.testing.assert_allclose(size, [2.0, 2.0, 1.0])
    # the goal cells of D4RL's *_TEST maps: umaze (0, 8), medium (20, 20), large (32, 24)
    expected_goal = {"umaze": (0, 8), "medium": (20, 20), "large": (32, 24)}[maze]
    np.testing.assert_allclose(antmaze.cell_xy(layout, gi, gj), expected_goal)
    assert env.dt == pytest.approx(0.1) and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    np.testing.assert_allclose(env.init_qpos[:7], [0, 0, 0.75, 1, 0, 0, 0])
    assert model.nq == 15 and model.nv == 14 and model.nu == 8
    np.testing.assert_allclose(model.actuator_ctrlrange, [[-30.0, 30.0]] * 8)
    np.testing.assert_allclose(model.actuator_gear[:, 0], 1.0)
    joints = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[k, 0]) for k in range(8)]
    assert joints == ["hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3"]
    np.testing.assert_allclose(model.dof_armature[6:], 1.0)
    np.testing.assert_allclose(model.dof_damping[6:], 1.0)


def test_observation_action_scaling_and_reset_noise():
    env = envs.make("antmaze-umaze-v2")
    obs, info = env.reset(seed=3)
    inner = env.unwrapped
    assert obs.shape == (29,) and env.action_space.shape == (8,)
    np.testing.assert_array_equal(obs, np.concatenate([inner.data.qpos[:15], inner.data.qvel[:14]]))
    assert np.all(np.abs(inner.data.qpos - inner.init_qpos) <= 0.1)  # U(-0.1, 0.1) on every qpos
    action = np.array([0.5, -1.0, 2.0, -3.0, 0.0, 0.1, -0.2, 1.0])
    env.step(action)
    np.testing.assert_allclose(inner.data.ctrl, np.clip(30.0 * action, -30.0, 30.0))
    with pytest.raises(EnvError, match="8 actions"):
        env.step(np.zeros(3))


def test_goal_distribution_is_d4rls_goal_sampler():
    """goal = cell centre + U(0, 1) + U(0, 0.5) per axis: mean 0.75, variance 1/12 + 0.25/12, support [0, 1.5]."""
    env = antmaze.D4RLAntMazeEnv("medium")
    offsets = []
    for seed in range(3000):
        _, info = env.reset(seed=seed)
        offsets.append(info["goal"] - np.array([20.0, 20.0]))
    offsets = np.array(offsets)
    assert offsets.min() >= 0.0 and offsets.max() <= 1.5
    np.testing.assert_allclose(offsets.mean(0), 0.75, atol=0.025)  # 4 standard errors
    np.testing.assert_allclose(offsets.var(0), 1 / 12 + 0.25 / 12, rtol=0.1)
    assert abs(np.corrcoef(offsets.T)[0, 1]) < 0.08  # the axes are drawn independently


def test_v2_draws_a_goal_per_episode_and_v0_keeps_one():
    v2, v0 = envs.make("antmaze-umaze"), envs.make("antmaze-umaze", v2_resets=False)
    goals_v2 = {tuple(v2.reset(seed=s)[1]["goal"]) for s in range(5)}
    goals_v0 = {tuple(v0.reset(seed=s)[1]["goal"]) for s in range(5)}
    assert len(goals_v2) == 5 and len(goals_v0) == 1


def test_sparse_reward_terminates_at_the_goal_and_time_limits():
    env = envs.make("antmaze-umaze")
    _, info = env.reset(seed=0)
    launched(env, info["goal"] + np.array([0.2, 0.0]), (0.0, 0.0), steps=0)  # placed 0.2 m from the goal
    _, reward, terminated, truncated, step_info = env.step(np.zeros(8))
    assert reward == 1.0 and terminated and not truncated and step_info["success"]
    env.reset(seed=0)
    _, reward, terminated, _, step_info = env.step(np.zeros(8))
    assert reward == 0.0 and not terminated and step_info["goal_distance"] > 7.0
    for limit, name in ((700, "antmaze-umaze-diverse"), (1000, "antmaze-large-play")):
        env = envs.make(name)
        env.reset(seed=1)
        steps, done = 0, False
        while not done:  # standing still never reaches the goal: the episode is cut at the limit
            _, _, terminated, truncated, _ = env.step(np.zeros(8))
            steps, done = steps + 1, terminated or truncated
        assert steps == limit and truncated and not terminated


def test_walls_stop_the_ant_and_corridors_do_not():
    env = envs.make("antmaze-umaze")
    env.reset(seed=0)
    # the wall row i = 0 spans y in [-6, -2]; launched at it from (0, -1), the ant bounces off
    toward_wall = launched(env, (0.0, -1.0), (0.0, -10.0))
    assert toward_wall[:, 1].min() > -2.0 and toward_wall[-1, 1] > toward_wall[:, 1].min()
    env.reset(seed=0)
    # the corridor (1, 1) -> (1, 3) is free up to x = 10: the same launch along x goes several metres
    along_corridor = launched(env, (0.0, 0.0), (10.0, 0.0))
    assert along_corridor[-1, 0] > 4.0


def test_snapshot_restores_the_goal_and_the_physics():
    a, b = envs.make("antmaze-medium-play"), envs.make("antmaze-medium-play")
    a.reset(seed=7)
    b.reset(seed=99)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a.step(rng.uniform(-1, 1, 8))
    set_env_state(b, get_env_state(a))
    actions = rng.uniform(-1, 1, (30, 8))
    out_a = [a.step(x) for x in actions]
    out_b = [b.step(x) for x in actions]
    for (oa, ra, *_), (ob, rb, *_) in zip(out_a, out_b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb
    np.testing.assert_array_equal(a.unwrapped.goal, b.unwrapped.goal)
    np.testing.assert_array_equal(a.reset()[1]["goal"], b.reset()[1]["goal"])  # same RNG stream after


def test_names_and_errors():
    assert envs.make("antmaze-large-diverse-v2").unwrapped.maze_name == "large"
    assert envs.make("antmaze-medium-diverse").unwrapped.maze_name == "medium"
    with pytest.raises(EnvError, match="unknown AntMaze level"):
        envs.make("antmaze-huge")


def test_antmaze_config_trains_and_evaluates_end_to_end(compose_cfg, tmp_path):
    """`rlkit train algo=iql env=antmaze-umaze` on a file in D4RL's AntMaze schema (29-dim observations,
    sparse rewards, 700-step timeouts): the AntMaze family settings apply, evaluation runs on this env and
    the score is D4RL's 100 x success rate."""
    from rlkit import trainer
    from rlkit.data.hdf5 import write_d4rl

    env = envs.make("antmaze-umaze")
    rng = np.random.default_rng(0)
    obs, acts, rews, timeouts = [], [], [], []
    for episode in range(3):
        o, _ = env.reset(seed=episode)
        for t in range(700):
            a = rng.uniform(-1, 1, 8)
            obs.append(o)
            acts.append(a)
            o, r, terminated, truncated, _ = env.step(a)
            rews.append(r)
            timeouts.append(truncated or t == 699)
            if terminated or truncated:
                break
    path = tmp_path / "antmaze-umaze-v2.hdf5"
    write_d4rl(path, observations=np.array(obs, np.float32), actions=np.array(acts, np.float32),
               rewards=np.array(rews, np.float32), terminals=np.zeros(len(rews), bool),
               timeouts=np.array(timeouts))
    cfg = compose_cfg("algo=iql", "env=antmaze-umaze", f"env.dataset.path={path}", "env.dataset.source=file",
                      "train.steps=100", "train.batch_size=32", "eval.interval=0", "eval.episodes=2",
                      "eval.num_envs=2", "algo.hidden=[32,32]", f"run_dir={tmp_path / 'run'}")
    assert cfg.algo.expectile == 0.9 and cfg.algo.temperature == 10.0 and cfg.algo.reward_shift == -1.0
    summary = trainer.run(cfg)
    assert summary["finished"] and summary["steps"] == 100
    assert summary["final_normalized_score"] == pytest.approx(100 * np.mean(summary["final_returns"]))
    assert set(summary["final_returns"]) <= {0.0, 1.0}
    assert summary["eval_protocol"] == "2 assigned episodes; deterministic policy"
