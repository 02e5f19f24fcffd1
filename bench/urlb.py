"""URLB throughput, measured in one run: environment steps/s of the dm_control adapter against raw dm_control,
and updates/s of DDPG, RND, RND + Self-Reference, CIC and MOSS (pretraining: intrinsic reward + its module's
update; finetuning: plain DDPG on ``[s, z]``) against the DDPG backbone,
at the paper's size (hidden 1024, batch 1024, skill 64) and at the
CPU-sized setting of the tests.  Ends with what a 2M-frame pretraining (1M updates) costs on this machine.

Usage: ``python bench/urlb.py [--sizes paper,cpu] [--updates 10] [--rounds 3] [--env-steps 3000] [--threads 1]
[--device cpu|cuda]``.  Use one thread on a shared machine (several-thread OpenMP spins under contention).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import rlkit.regimes.urlb  # noqa: E402,F401  (loads triton before dm_control's EGL)
from rlkit import envs  # noqa: E402
from rlkit.algorithms.unsupervised import CIC, DDPG, MOSS, RND  # noqa: E402
from rlkit.algorithms.unsupervised.self_reference import SelfReference  # noqa: E402
from rlkit.replay import ColumnarStorage, ReplayBuffer, make_sampler  # noqa: E402

SIZES = {"paper": {"hidden_dim": 1024, "batch": 1024, "skill_dim": 64},
         "cpu": {"hidden_dim": 64, "batch": 128, "skill_dim": 16}}


def env_rates(steps: int) -> list[tuple[str, float, float]]:
    from env_throughput import bench_dmc

    out = []
    for task in ("walker_stand", "quadruped_walk", "jaco_reach_top_left"):
        raw, adapter = bench_dmc(task, steps)
        out.append((task, raw, adapter))
    return out


def make_agent(cls, env, size: dict, reward_free: bool, device: str, sr: bool = False):
    kwargs = {"hidden_dim": size["hidden_dim"]}
    if cls in (CIC, MOSS):
        kwargs.update(skill_dim=size["skill_dim"])
    if sr:  # the paper's k, D and window; our U = 256
        kwargs["addon"] = SelfReference(env.observation_space, device=device)
    agent = cls(env.observation_space, env.action_space, device=device, **kwargs)
    if cls is not DDPG:
        agent.setup_urlb(reward_free=reward_free, seed_steps=4000, episode_steps=1000)
    return agent


def filled_buffer(agent, rows: int, device: str, seed: int = 0) -> ReplayBuffer:
    columns = agent.replay_spec(seed).columns
    storage = ColumnarStorage(rows, columns, device=device if device != "cpu" else None)
    rng = np.random.default_rng(seed)
    data = {k: rng.standard_normal((rows, *shape)).astype(dtype) for k, (shape, dtype) in columns.items()}
    data["terminated"][:] = 0
    data["truncated"][:] = (np.arange(rows) % 1000) == 999
    if "mode" in data:
        data["mode"] = (rng.random(rows) < 0.5).astype(np.float32)
    for flag in ("sr_from_query", "sr_bypass"):
        if flag in data:
            data[flag] = (rng.random(rows) < 0.5).astype(np.float32)
    storage.add(**data)
    buffer = ReplayBuffer(storage, make_sampler("uniform", seed=seed), device=device, nstep=3, gamma=0.99)
    agent.on_episode_end(buffer)  # Self-Reference: the reference memory is the replay's newest rows
    return buffer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_updates(agent, buffer: ReplayBuffer, batch: int, updates: int, device: str) -> tuple[float, float]:
    """(seconds for ``updates`` updates including sampling, seconds spent sampling)."""
    sync(device)
    sample_time = 0.0
    start = time.perf_counter()
    for _ in range(updates):
        t = time.perf_counter()
        b = buffer.sample(batch)
        sample_time += time.perf_counter() - t
        agent.update(b)
    sync(device)
    return time.perf_counter() - start, sample_time


def act_rate(agent, env, steps: int = 300) -> float:
    obs = env.reset(seed=0)[0][None]
    meta = None
    agent.act(obs, meta)
    start = time.perf_counter()
    for _ in range(steps):
        agent.act(obs, meta)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="paper,cpu")
    parser.add_argument("--updates", type=int, default=10, help="updates per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")

    print("\n== environment steps/s (random actions, states) ==")
    rates = env_rates(args.env_steps)
    for task, raw, adapter in rates:
        print(f"{task:22s} raw dm_control {raw:8.0f}/s  adapter {adapter:8.0f}/s  adapter/raw {adapter / raw:.2f}")
    walker_env_rate = rates[0][2]

    env = envs.make("urlb-walker", seed=0)
    for name in args.sizes.split(","):
        size = SIZES[name]
        print(f"\n== updates/s, {name} size (hidden {size['hidden_dim']}, batch {size['batch']}, "
              f"skill {size['skill_dim']}) ==")
        agents = {}
        variants = (("DDPG", DDPG, False, False), ("RND pretrain", RND, True, False),
                    ("RND+SR pretrain", RND, True, True), ("CIC pretrain", CIC, True, False),
                    ("MOSS pretrain", MOSS, True, False), ("MOSS finetune", MOSS, False, False))
        for label, cls, reward_free, sr in variants:
            agent = make_agent(cls, env, size, reward_free, args.device, sr)
            buffer = filled_buffer(agent, 20_000, args.device)
            timed_updates(agent, buffer, size["batch"], 2, args.device)  # warm-up
            agents[label] = (agent, buffer, [], [])
        for _ in range(args.rounds):  # interleaved rounds, median: robust to a busy machine
            for agent, buffer, totals, samples in agents.values():
                total, sampling = timed_updates(agent, buffer, size["batch"], args.updates, args.device)
                totals.append(total)
                samples.append(sampling)
        results = {}
        for label, (agent, _, totals, samples) in agents.items():
            rate = args.updates / float(np.median(totals))
            acts = act_rate(agent, env)
            results[label] = (rate, acts)
            print(f"{label:16s} {rate:8.2f} updates/s  ({sum(samples) / sum(totals):.0%} sampling)  "
                  f"x{rate / results['DDPG'][0]:.2f} of DDPG   act {acts:7.0f}/s")
        moss_rate, moss_act = results["MOSS pretrain"]
        # 2M frames at action repeat 1: 2M env steps and acts, 1M updates (one every 2 steps), 4000 seed steps
        seconds = 2e6 / walker_env_rate + 2e6 / moss_act + 1e6 / moss_rate
        print(f"MOSS 2M-frame pretraining at this size here: {seconds / 3600:.1f} h "
              f"(updates {1e6 / moss_rate / 3600:.1f} h, env {2e6 / walker_env_rate / 3600:.2f} h, "
              f"acting {2e6 / moss_act / 3600:.2f} h)")


if __name__ == "__main__":
    main()
