"""dm_control adapter and URLB tasks: names, shapes, protocol, and every reward against its formula.

The reward checks compute the formula of URLB's released code and dm_control independently of
dm_control's helpers -- own ``tolerance``, upright from the quaternion, subtree centre of mass and angular
momentum summed body by body -- on hand-set and random physics states, and on the states the env reaches
while stepping (comparing to the reward ``step`` returns).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from rlkit import envs
from rlkit.envs import dmc
from rlkit.errors import EnvError

# --- the tasks' formulas, written out ------------------------------------------------------------------


def tol(x: float, lo: float, hi: float, margin: float, value_at_margin: float = 0.1,
        sigmoid: str = "gaussian") -> float:
    """dm_control's ``rewards.tolerance``, written out."""
    if lo <= x <= hi:
        return 1.0
    if margin == 0:
        return 0.0
    d = (lo - x) / margin if x < lo else (x - hi) / margin
    if sigmoid == "gaussian":
        return math.exp(-0.5 * (d * math.sqrt(-2 * math.log(value_at_margin))) ** 2)
    assert sigmoid == "linear"
    scaled = d * (1 - value_at_margin)
    return 1 - scaled if scaled < 1 else 0.0


def upright_zz(physics, body: str) -> float:
    """zz of a body's rotation matrix from its quaternion: 1 - 2 (qx^2 + qy^2)."""
    w, x, y, z = physics.named.data.xquat[body]
    return 1 - 2 * (x * x + y * y)


def subtree_bodies(model: mujoco.MjModel, root: int) -> list[int]:
    return [b for b in range(model.nbody) if _descends(model, b, root)]


def _descends(model: mujoco.MjModel, b: int, root: int) -> bool:
    while b != root and b != 0:
        b = model.body_parentid[b]
    return b == root


def subtree_com(physics, body: str) -> np.ndarray:
    m, d = physics.model.ptr, physics.data.ptr
    bodies = subtree_bodies(m, m.body(body).id)
    masses = m.body_mass[bodies]
    return (masses[:, None] * d.xipos[bodies]).sum(0) / masses.sum()


def subtree_angular_momentum(physics, body: str) -> np.ndarray:
    """sum_i [R_i I_i R_i^T w_i + m_i (x_i - c) x v_i] about the subtree's centre of mass c."""
    m, d = physics.model.ptr, physics.data.ptr
    c = subtree_com(physics, body)
    total = np.zeros(3)
    vel = np.zeros(6)
    for b in subtree_bodies(m, m.body(body).id):
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, b, vel, 0)  # [w, v] at the COM, world
        rot = d.ximat[b].reshape(3, 3)
        inertia = rot @ np.diag(m.body_inertia[b]) @ rot.T
        total += inertia @ vel[:3] + m.body_mass[b] * np.cross(d.xipos[b] - c, vel[3:])
    return total


def walker_stand(physics) -> float:
    h = physics.named.data.xpos["torso", "z"]
    return (3 * tol(h, 1.2, math.inf, 0.6) + (1 + upright_zz(physics, "torso")) / 2) / 4


def walker_move(physics, speed: float) -> float:
    vx = physics.named.data.sensordata["torso_subtreelinvel"][0]
    return walker_stand(physics) * (5 * tol(vx, speed, math.inf, speed / 2, 0.5, "linear") + 1) / 6


def walker_flip(physics) -> float:
    ly = subtree_angular_momentum(physics, "torso")[1]
    return walker_stand(physics) * (5 * tol(ly, 5, math.inf, 5, 0.0, "linear") + 1) / 6


def quadruped_upright(physics) -> float:
    return tol(upright_zz(physics, "torso"), 1, math.inf, 2, 0.0, "linear")


def quadruped_move(physics, speed: float) -> float:
    v_fwd = physics.named.data.sensordata["velocimeter"][0]
    return quadruped_upright(physics) * tol(v_fwd, speed, math.inf, speed, 0.5, "linear")


def quadruped_jump(physics) -> float:
    z_com = subtree_com(physics, "torso")[2]
    return quadruped_upright(physics) * tol(z_com, 1.0, math.inf, 1.0, 0.5, "linear")


def jaco_reach(physics) -> float:
    tcp = physics.named.data.site_xpos["jaco_arm/jaco_hand/pinchsite"]
    brick = physics.named.data.xpos["duplo2x4/"]
    return tol(float(np.linalg.norm(tcp - brick)), 0.0, 0.05, 0.05)


FORMULAS = {
    "walker_stand": walker_stand,
    "walker_walk": lambda p: walker_move(p, 1.0),
    "walker_run": lambda p: walker_move(p, 8.0),
    "walker_flip": walker_flip,
    "quadruped_stand": quadruped_upright,
    "quadruped_walk": lambda p: quadruped_move(p, 0.5),
    "quadruped_run": lambda p: quadruped_move(p, 5.0),
    "quadruped_jump": quadruped_jump,
    **{f"jaco_{t}": jaco_reach for t in ("reach_top_left", "reach_top_right", "reach_bottom_left",
                                          "reach_bottom_right")},
}


def task_reward(env: dmc.DMCEnv) -> float:
    return float(env.dm_env.task.get_reward(env.physics))


# --- names and tables ----------------------------------------------------------------------------------


def test_urlb_names_and_expert_table():
    assert len(dmc.URLB_TASKS) == 12 and set(dmc.URLB_EXPERT_SCORES) == set(dmc.URLB_TASKS)
    assert dmc.URLB_EXPERT_SCORES["walker_flip"] == 799
    assert dmc.URLB_EXPERT_SCORES["jaco_reach_top_right"] == 223
    assert {dmc.domain_of(t) for t in dmc.URLB_TASKS} == set(dmc.URLB_DOMAINS)
    assert dmc.domain_of("urlb-jaco") == "jaco" and dmc.domain_of("urlb-quadruped_jump") == "quadruped"
    assert dmc.split_task("dmc-ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert dmc.URLB_PRETRAIN_TASKS == {"walker": "walker_stand", "quadruped": "quadruped_walk",
                                       "jaco": "jaco_reach_top_left"}
    for bad in ("urlb-cheetah_run", "urlb-walker_backflip", "dmc-nosuchdomain_run", "dmc-walker"):
        with pytest.raises(EnvError):
            envs.make(bad)


# --- observations, actions --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, obs_dim, act_dim, steps", [
    ("urlb-walker_flip", 24, 6, 1000), ("urlb-quadruped_jump", 78, 12, 1000),
    ("urlb-jaco_reach_bottom_right", 55, 9, 250), ("dmc-cheetah_run", 17, 6, 1000),
])
def test_state_observations_and_actions(name, obs_dim, act_dim, steps):
    env = envs.make(name, seed=0)
    obs, info = env.reset()
    assert obs.shape == (obs_dim,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert env.action_space.shape == (act_dim,) and np.all(env.action_space.low == -1)
    assert np.all(env.action_space.high == 1) and env.max_episode_steps == steps
    raw = dmc.load_dm_env(env.domain, env.task_name, np.random.RandomState(0)).reset().observation
    assert tuple(raw) == env.observation_keys
    flat = np.concatenate([np.ravel(v) for v in raw.values()]).astype(np.float32)
    np.testing.assert_array_equal(obs, flat)  # the raw env's dict, flattened in its order
    assert info["discount"] == 1.0


def test_actions_map_onto_the_action_spec():
    env = envs.make("urlb-jaco_reach_top_left", seed=0)
    env.reset()
    spec = env.dm_env.action_spec()
    for a in (-np.ones(9), np.ones(9), np.linspace(-1, 1, 9), 3 * np.ones(9)):
        env.step(a.astype(np.float32))
        expected = spec.minimum + (np.clip(a, -1, 1) + 1) / 2 * (spec.maximum - spec.minimum)
        np.testing.assert_allclose(env.physics.data.ctrl, expected, rtol=1e-6, atol=1e-6)


# --- rewards against the tasks' formulas -----------------------------------------------------------------


def _random_states(env, rng, n):
    """Hand-set states: qpos/qvel drawn around the initial state, then physics.forward()."""
    physics = env.physics
    q0, v0 = physics.data.qpos.copy(), physics.data.qvel.copy()
    for _ in range(n):
        with physics.reset_context():
            physics.data.qpos[:] = q0 + rng.normal(0, 0.3, q0.shape)
            physics.data.qvel[:] = v0 + rng.normal(0, 3.0, v0.shape)
        physics.forward()
        yield physics


@pytest.mark.parametrize("task", dmc.URLB_TASKS)
def test_reward_matches_formula(task):
    env = envs.make("urlb-" + task, seed=1)
    formula = FORMULAS[task]
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(10):  # states the env reaches, compared with what step() returns
        _, reward, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        assert reward == pytest.approx(formula(env.physics), rel=1e-6, abs=1e-9)
    for physics in _random_states(env, rng, 20):
        assert task_reward(env) == pytest.approx(formula(physics), rel=1e-6, abs=1e-9)


def _set_walker(physics, height, pitch, pitch_rate, vx=0.0):
    with physics.reset_context():
        physics.named.data.qpos[["rootz", "rootx", "rooty"]] = [height - 1.3, 0.0, pitch]
        physics.named.data.qvel[:] = 0
        physics.named.data.qvel[["rootx", "rooty"]] = [vx, pitch_rate]
    physics.forward()


def test_walker_flip_reward_branches():
    """Upright and spinning fast -> 1; upright, still -> 1/6 of the stand term; upside down -> less."""
    env = envs.make("urlb-walker_flip", seed=0)
    env.reset()
    physics = env.physics
    _set_walker(physics, height=1.3, pitch=0.0, pitch_rate=40.0)
    ly = subtree_angular_momentum(physics, "torso")[1]
    assert ly > 5 and task_reward(env) == pytest.approx(1.0)
    _set_walker(physics, height=1.3, pitch=0.0, pitch_rate=0.0)
    assert task_reward(env) == pytest.approx(1 / 6)
    _set_walker(physics, height=1.3, pitch=0.0, pitch_rate=-40.0)  # backwards: no flip reward
    assert task_reward(env) == pytest.approx(1 / 6)
    _set_walker(physics, height=1.3, pitch=math.pi / 2, pitch_rate=4.0)  # in the linear margin
    expected = walker_flip(physics)
    assert 0 < expected < 1 and task_reward(env) == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(physics.named.data.subtree_angmom["torso"],
                               subtree_angular_momentum(physics, "torso"), rtol=1e-8, atol=1e-10)


def test_quadruped_jump_and_stand_closed_form():
    """Upright torso: stand = 1; jump = 0.5 + 0.5 z_com below 1 m and 1 above."""
    for task in ("quadruped_stand", "quadruped_jump"):
        env = envs.make("urlb-" + task, seed=0)
        env.reset()
        physics = env.physics
        for z in (0.3, 0.6, 1.4):
            with physics.reset_context():
                physics.named.data.qpos["root"] = [0, 0, z, 1, 0, 0, 0]
            physics.forward()
            z_com = subtree_com(physics, "torso")[2]
            expected = 1.0 if task == "quadruped_stand" else min(1.0, 0.5 + 0.5 * z_com)
            assert task_reward(env) == pytest.approx(expected, rel=1e-9)
        with physics.reset_context():  # upside down: upright term 0
            physics.named.data.qpos["root"] = [0, 0, 0.6, 0, 1, 0, 0]
        physics.forward()
        assert task_reward(env) == pytest.approx(0.0, abs=1e-9)


def test_jaco_reach_targets_and_reward():
    targets = {"reach_top_left": (-0.09, 0.09), "reach_top_right": (0.09, 0.09),
               "reach_bottom_left": (-0.09, -0.09), "reach_bottom_right": (0.09, -0.09)}
    for task, xy in targets.items():
        env = envs.make("urlb-jaco_" + task, seed=3)
        env.reset()
        physics = env.physics
        np.testing.assert_allclose(physics.named.data.xpos["duplo2x4/"][:2], xy, atol=2e-3)
    tcps = []
    for seed in range(12):  # tool-centre point ~ U([-0.1, 0.1]^2 x [0.2, 0.4])
        env.reset(seed=seed)
        tcps.append(env.physics.named.data.site_xpos["jaco_arm/jaco_hand/pinchsite"].copy())
    tcps = np.array(tcps)
    assert np.all(np.abs(tcps[:, :2]) <= 0.1 + 1e-3)
    assert np.all((tcps[:, 2] >= 0.2 - 1e-3) & (tcps[:, 2] <= 0.4 + 1e-3))
    assert np.ptp(tcps, axis=0).min() > 0.08  # spread over the box, not a point
    physics = env.physics
    tcp = physics.named.data.site_xpos["jaco_arm/jaco_hand/pinchsite"].copy()
    # Brick placed onto the tool-centre point -> reward 1; 2.5 cm beyond the 5 cm radius -> gaussian tail.
    for offset, expected in ((0.0, 1.0), (0.075, tol(0.075, 0, 0.05, 0.05))):
        physics.named.data.qpos["duplo2x4/"][:3] = tcp + np.array([offset, 0.0, 0.0])
        physics.forward()  # (not reset_context, which would first reset the arm to its default pose)
        pinch = physics.named.data.site_xpos["jaco_arm/jaco_hand/pinchsite"]
        np.testing.assert_allclose(pinch, tcp, atol=1e-12)
        assert task_reward(env) == pytest.approx(expected, rel=1e-9)


# --- protocol: action repeat, seeding, episode ends ---------------------------------------------------


def test_action_repeat_sums_rewards_and_advances_time():
    one = envs.make("urlb-walker_walk", seed=5, action_repeat=1)
    two = envs.make("urlb-walker_walk", seed=5, action_repeat=2)
    o1, _ = one.reset()
    o2, _ = two.reset()
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        r_a = one.step(a)[1]
        o1, r_b, *_ = one.step(a)
        o2, r2, *_ = two.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert r2 == pytest.approx(r_a + r_b, rel=1e-12)
    assert two.physics.data.time == pytest.approx(20 * 2 * 0.025)
    assert two.max_episode_steps == 500
    assert envs.make("urlb-walker_walk").action_repeat == 1
    assert envs.make("urlb-walker_walk", obs_type="pixels").action_repeat == 2


def _rollout(env, seed, n=30):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(1)
    out = [obs]
    for _ in range(n):
        obs, r, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        out += [obs, np.float32(r)]
    return out


@pytest.mark.parametrize("name", ["urlb-quadruped_walk", "urlb-jaco_reach_top_left"])
def test_seeding_reproduces_episodes(name):
    a, b = envs.make(name), envs.make(name)
    ra, rb = _rollout(a, 11), _rollout(b, 11)
    assert all(np.array_equal(x, y) for x, y in zip(ra, rb))
    assert all(np.array_equal(x, y) for x, y in zip(_rollout(a, 11), ra))  # re-seeding an used env
    assert not np.array_equal(_rollout(b, 12)[0], ra[0])
    c = envs.make(name, seed=11)  # seed at construction = seed at first reset
    obs, _ = c.reset()
    np.testing.assert_array_equal(obs, ra[0])


@pytest.mark.parametrize("name, action_repeat, steps", [
    ("urlb-walker_stand", 1, 1000), ("urlb-walker_stand", 3, 334), ("urlb-jaco_reach_top_left", 1, 250),
])
def test_time_limit_is_truncation(name, action_repeat, steps):
    env = envs.make(name, seed=0, action_repeat=action_repeat)
    env.reset()
    zero = np.zeros(env.action_space.shape, np.float32)
    for t in range(1, steps + 1):
        _, _, terminated, truncated, info = env.step(zero)
        assert not terminated and truncated == (t == steps)
    assert info["discount"] == 1.0
    with pytest.raises(EnvError):
        env.step(zero)
    env.reset()
    env.step(zero)


def test_pretraining_env_is_the_primal_task():
    env = envs.make("urlb-quadruped", seed=0)
    _, info = env.reset()
    assert info["reward_free"] and env.task_name == "walk"
    _, reward, *_ = env.step(np.zeros(12, np.float32))
    assert reward == pytest.approx(quadruped_move(env.physics, 0.5), rel=1e-6, abs=1e-9)
    assert envs.make("urlb-walker").task_name == "stand"
    assert envs.make("urlb-jaco").task_name == "reach_top_left"


def _can_render() -> bool:
    try:
        envs.make("urlb-walker_stand", obs_type="pixels").reset(seed=0)
    except EnvError:
        return False
    return True


@pytest.mark.skipif(not _can_render(), reason="no OpenGL backend for MuJoCo rendering")
def test_pixels_are_stacked_channels_first():
    env = envs.make("urlb-walker_stand", obs_type="pixels", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs[:3], obs[6:])  # the reset frame fills the stack
    nxt, *_ = env.step(np.zeros(6, np.float32))
    np.testing.assert_array_equal(nxt[:6], obs[3:])
    np.testing.assert_array_equal(nxt[6:], env.render().transpose(2, 0, 1))
