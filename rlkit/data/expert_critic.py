"""Expert critics for OAP's preference oracle, by fitted Q evaluation of a shipped rlkit SAC expert.

OAP (Yang et al. 2023, Sec. 4.1) answers a preference query with an expert's action value: of the dataset action
and the policy's action, the one with the larger ``Q*(s, a)``.  The shipped oracles are the critics trained together
with the shipped SAC experts (``python -m rlkit.data.behaviour RUN TASK --critic``).  For an expert whose run kept
no critic, or to compare with the co-trained one, this module fits a critic to the expert *policy* by fitted Q
evaluation (FQE; Le, Voloshin & Yue 2019, "Batch Policy Learning under Constraints", Sec. 4):

    Q_k(s, a)  <-  r + γ (1 - d) Q̄_k(s', μ_e(s')),     k = 1, 2,

two independent estimates in SAC's twin-critic layout (so the oracle reads ``min_k Q_k`` exactly as it reads a SAC
run's critic), ``μ_e`` the expert's deterministic (tanh-mean) action, Adam, Polyak-averaged targets ``Q̄``.  This is
``Q^{μ_e}``: the value of taking ``a`` and then acting as the expert, which is what the oracle compares.

**Data** (:func:`collect`): the oracle compares actions at the *offline policy's* states (near the medium data)
with values of the *expert's* continuation, so FQE needs both the medium policy's states and expert actions taken
from them.  Each of four equal parts is a per-step mixture: with probability ``p`` the expert's mean action plus
Gaussian noise ``σ`` (in units of half the action range), otherwise the medium policy's sampled action, for
``(p, σ) = (1, 0.1), (0.7, 0.3), (0.3, 0.3), (0, -)``.

**Check** (:func:`agreement`): at states of the medium policy the critic ranks pairs of actions (the medium
policy's sampled vs mean action, as OAP's ``a`` vs ``π(s)``; medium vs expert; uniform vs medium); the truth
restores the simulator to the state (MuJoCo ``qpos``/``qvel``), takes the action, then follows ``μ_e`` for
``horizon`` steps (discounted return).  Reported per pair kind: agreement on all pairs and on the half with the
larger true gap.

``python -m rlkit.data.expert_critic hopper --out-dir DIR`` writes ``DIR/hopper-expert-critic.pt`` (without
``--out-dir`` it replaces the shipped critic); ``--check-only`` runs the check on the critic already there (e.g. the
shipped one, exported with its SAC run by ``python -m rlkit.data.behaviour RUN <task> --critic``, the paper's
oracle) and stores it in the file.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkit.data.collect import POLICY_DIR, BehaviourPolicy, load_policy, rollout
from rlkit.data.d4rl import to_dataset
from rlkit.data.dataset import Dataset
from rlkit.nets import polyak_update
from rlkit.nets.mlp import EnsembleLinear
from rlkit.optim import adam
from rlkit.utils import atomic_torch_save, derive_seed

MIXTURES = ((1.0, 0.1), (0.7, 0.3), (0.3, 0.3), (0.0, 0.0))


class MixturePolicy:
    """Per env step: the expert's mean action plus ``N(0, σ²)`` noise (half-range units, clipped) with probability
    ``p``, else the medium policy's sampled action."""

    def __init__(self, expert: BehaviourPolicy, medium: BehaviourPolicy, p: float, sigma: float,
                 low: np.ndarray, high: np.ndarray, seed: int) -> None:
        self.expert, self.medium, self.p, self.sigma = expert, medium, p, sigma
        self.low, self.high = low, high
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        expert = self.expert.algo.act(obs, None, deterministic=True)[0]
        expert = expert + self.rng.normal(0.0, self.sigma, expert.shape) * (self.high - self.low) / 2
        expert = np.clip(expert, self.low, self.high)
        use_expert = self.rng.random(n) < self.p
        if use_expert.all():
            return expert.astype(np.float32)
        medium = self.medium(obs)
        return np.where(use_expert[:, None], expert, medium).astype(np.float32)


def _policies(task: str) -> tuple[BehaviourPolicy, BehaviourPolicy, Any]:
    from rlkit import envs

    probe = envs.make_vector(task, 1)
    expert = load_policy(POLICY_DIR / f"{task}-expert.pt", probe)
    medium = load_policy(POLICY_DIR / f"{task}-medium.pt", probe)
    space = probe.single_action_space
    probe.close()
    return expert, medium, space


def collect(task: str, expert: BehaviourPolicy, medium: BehaviourPolicy, steps: int, seed: int = 0,
            num_envs: int = 8) -> Dataset:
    """``steps`` transitions in the four mixture parts, with simulator states (see the module docstring)."""
    low, high = expert.algo._action_low, expert.algo._action_high
    parts = []
    for i, (p, sigma) in enumerate(MIXTURES):
        policy = MixturePolicy(expert, medium, p, sigma, low, high, derive_seed(seed, f"fqe mix {i}"))
        raw = rollout(task, policy, steps // len(MIXTURES), derive_seed(seed, f"fqe rollout {i}"), num_envs)
        raw = {("infos/" + k if k in ("qpos", "qvel") else k): v for k, v in raw.items()}
        parts.append(to_dataset(raw, {"mixture": [p, sigma]}))
    return Dataset.concatenate(parts, {"source": "fqe mixture", "task": task, "mixtures": [list(m) for m in MIXTURES]})


def fit(expert: BehaviourPolicy, data: Dataset, steps: int, *, batch_size: int = 256, lr: float = 3e-4,
        gamma: float = 0.99, tau: float = 0.005, seed: int = 0, log_every: int = 10_000) -> dict[str, Any]:
    """FQE of the expert's deterministic policy on ``data``; returns the critic ``state_dict`` and TD losses."""
    algo = expert.algo
    torch.manual_seed(derive_seed(seed, "fqe init"))
    critic = copy.deepcopy(algo.critic).requires_grad_(True)
    for module in critic.modules():
        if isinstance(module, EnsembleLinear):
            module.reset_parameters()
    target = copy.deepcopy(critic).requires_grad_(False)
    opt = adam(critic.parameters(), lr)
    obs = torch.as_tensor(data.observations)
    nxt = torch.as_tensor(data.next_observations)
    act = algo.from_env_action(torch.as_tensor(data.actions))
    rew = torch.as_tensor(data.rewards)
    not_done = 1.0 - torch.as_tensor(data.terminals, dtype=torch.float32)
    with torch.no_grad():
        next_act = torch.cat([algo.actor(nxt[i:i + 65536]).mode for i in range(0, len(nxt), 65536)])
    gen = torch.Generator().manual_seed(derive_seed(seed, "fqe batches"))
    losses = []
    running = torch.zeros(())
    for step in range(1, steps + 1):
        idx = torch.randint(len(obs), (batch_size,), generator=gen)
        with torch.no_grad():
            y = rew[idx] + gamma * not_done[idx] * target(nxt[idx], next_act[idx])
        loss = (critic(obs[idx], act[idx]) - y).pow(2).mean(-1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        polyak_update(critic, target, tau)
        running += loss.detach()
        if step % log_every == 0:
            losses.append((step, float(running) / log_every))
            running.zero_()
    return {"critic": critic.state_dict(), "td_loss": losses}


PAIRS = ("sampled_vs_mean", "sampled_vs_expert", "random_vs_sampled")


def agreement(task: str, expert: BehaviourPolicy, medium: BehaviourPolicy, critic_state: dict[str, torch.Tensor],
              states: int = 256, horizon: int = 300, gamma: float = 0.99, seed: int = 0) -> dict[str, Any]:
    """How often ``min_k Q_k`` ranks two actions at a medium-policy state like the simulator does, per pair kind:
    ``sampled_vs_mean`` (the medium policy's sampled vs its mean action: OAP's ``a`` vs ``π(s)`` when ``π`` has
    cloned the data), ``sampled_vs_expert`` (sampled medium action vs the expert's mean action) and
    ``random_vs_sampled`` (a uniform action vs the sampled medium action).  Truth: restore, take the action, follow
    ``μ_e`` for ``horizon`` steps, discounted return.  Also the agreement on the half of the pairs with the larger
    true gap, and Spearman's rank correlation of Q with the true return over all pairs."""
    from rlkit import envs
    from rlkit.envs.restore import rollout_returns

    raw = rollout(task, medium, states * 4, derive_seed(seed, "fqe check states"), 8)
    rows = np.random.default_rng(derive_seed(seed, "fqe check rows")).choice(len(raw["rewards"]), states,
                                                                           replace=False)
    obs = raw["observations"][rows].astype(np.float32)
    torch.manual_seed(derive_seed(seed, "fqe check actions"))
    algo = expert.algo
    low, high = algo._action_low, algo._action_high
    actions = {"sampled": medium(obs), "mean": medium.algo.act(obs, None, deterministic=True)[0],
               "expert": algo.act(obs, None, deterministic=True)[0],
               "random": np.random.default_rng(derive_seed(seed, "fqe check random")).uniform(
                   low, high, (states, *np.shape(low))).astype(np.float32)}
    critic = copy.deepcopy(algo.critic)
    critic.load_state_dict({k: v.float() for k, v in critic_state.items()})
    with torch.no_grad():
        q = {k: critic(torch.as_tensor(obs), algo.from_env_action(torch.as_tensor(a))).min(0).values.numpy()
             for k, a in actions.items()}

    def follow(x: torch.Tensor) -> torch.Tensor:
        return algo.actor(x).mode * algo.action_scale + algo.action_bias

    pool = [envs.make(task) for _ in range(32)]
    for i, env in enumerate(pool):
        env.reset(seed=i)
    true = {k: rollout_returns(pool, raw["qpos"][rows], raw["qvel"][rows], a, follow, horizon, torch.device("cpu"),
                               gamma) for k, a in actions.items()}
    out: dict[str, Any] = {"states": int(states), "horizon": int(horizon)}
    for pair in PAIRS:
        first, second = pair.split("_vs_")
        true_gap, q_gap = true[second] - true[first], q[second] - q[first]
        agree = np.sign(true_gap) == np.sign(q_gap)
        large = np.abs(true_gap) >= np.median(np.abs(true_gap))
        out[pair] = {"agreement": float(agree.mean()), "agreement_large_gap": float(agree[large].mean()),
                     "second_better": float((true_gap > 0).mean())}
    out["spearman_q_vs_return"] = _spearman(np.concatenate(list(q.values())), np.concatenate(list(true.values())))
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def export(task: str, data_steps: int = 200_000, fqe_steps: int = 100_000, seed: int = 0,
           out_dir: Path = POLICY_DIR) -> dict[str, Any]:
    """Collect, fit, check, and write ``<task>-expert-critic.pt`` (``{"algo_config", "critic", **info}``, float16
    critic, the format :func:`rlkit.algorithms.offline.oap.oracles.load_expert_oracle` reads)."""
    start = time.time()
    expert, medium, _ = _policies(task)
    data = collect(task, expert, medium, data_steps, seed)
    fitted = fit(expert, data, fqe_steps, seed=seed)
    critic = {k: v.to(torch.float16) for k, v in fitted["critic"].items()}
    check = agreement(task, expert, medium, critic, seed=seed)
    shipped = torch.load(POLICY_DIR / f"{task}-expert.pt", map_location="cpu", weights_only=False)
    info = {"task": task, "level": "expert-critic",
            "trainer": "FQE (Le et al. 2019) of the rlkit SAC expert actor",
            "policy": f"{task}-expert.pt", "train_steps": int(shipped["train_steps"]),
            "eval_return_mean": float(shipped["eval_return_mean"]),
            "normalized_score": float(shipped["normalized_score"]),
            "fqe_steps": int(fqe_steps), "fqe_data": int(data.size), "fqe_td_loss": fitted["td_loss"],
            "check": check, "wall_s": round(time.time() - start, 1)}
    atomic_torch_save(out_dir / f"{task}-expert-critic.pt", {"algo_config": shipped["algo_config"], "critic": critic,
                                                             **info})
    return info


def check_shipped(task: str, out_dir: Path = POLICY_DIR, seed: int = 0) -> dict[str, Any]:
    """Run :func:`agreement` on the ``<task>-expert-critic.pt`` in ``out_dir`` (fitted here or exported with its
    SAC run by ``python -m rlkit.data.behaviour RUN <task> --critic``) against the shipped expert and medium
    policies, store the result in the file as ``check`` and return it."""
    path = out_dir / f"{task}-expert-critic.pt"
    payload = torch.load(path, map_location="cpu", weights_only=False)
    expert, medium, _ = _policies(task)
    payload["check"] = agreement(task, expert, medium, payload["critic"], seed=seed)
    atomic_torch_save(path, payload)
    return payload["check"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Fit OAP's expert critic to a shipped SAC expert (FQE).")
    parser.add_argument("task", choices=("hopper", "halfcheetah", "walker2d"))
    parser.add_argument("--data-steps", type=int, default=200_000)
    parser.add_argument("--fqe-steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=POLICY_DIR)
    parser.add_argument("--check-only", action="store_true",
                        help="only check the critic already in --out-dir against the simulator (no fitting)")
    ns = parser.parse_args()
    torch.set_num_threads(1)
    if ns.check_only:
        print(json.dumps(check_shipped(ns.task, ns.out_dir, ns.seed), indent=2, default=float))
        return
    info = export(ns.task, ns.data_steps, ns.fqe_steps, ns.seed, ns.out_dir)
    print(json.dumps(info, indent=2, default=float))


if __name__ == "__main__":
    main()
