"""Update throughput of the offline algorithms (batch 256, HalfCheetah-sized problem, CPU by default).

Prints updates/s for rlkit's TD3+BC, IQL and CQL next to a plain eager PyTorch TD3+BC written below in
the style of the reference single-file implementations (CORL / the TD3+BC authors' code: two
``nn.Sequential`` critics evaluated one after the other, default ``torch.optim.Adam``, a per-parameter
Python loop for the Polyak update, ``.item()`` logging every step).  Every variant gets the same
pre-sampled batches; the variants are timed in interleaved blocks of ``--block`` updates and the ratio to
the plain update is taken per round (median of ``--rounds`` reported), so that a change in machine load
hits every variant alike.  ``--compile`` adds rlkit's TD3+BC with
``compile=True`` (``torch.compile`` of the two loss functions), compile time reported separately.

    python bench/offline_update.py                     # CPU, 2 threads
    python bench/offline_update.py --compile           # also torch.compile
    python bench/offline_update.py --device cuda --updates 2000 --cuda-graph

Target (issue 3): rlkit TD3+BC >= 1.3x the plain eager update.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.algorithms.offline.awac import AWAC
from rlkit.algorithms.offline.cql import CQL
from rlkit.algorithms.offline.iql import IQL
from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.replay.batch import Batch

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah


# ---------------------------------------------------------------------------------------------- baseline
class PlainActor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, max_action: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, action_dim), nn.Tanh())
        self.max_action = max_action

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(state)


class PlainCritic(nn.Module):
    def __init__(self, state_dim: int, action_dim: int) -> None:
        super().__init__()

        def q() -> nn.Sequential:
            return nn.Sequential(nn.Linear(state_dim + action_dim, 256), nn.ReLU(), nn.Linear(256, 256),
                                 nn.ReLU(), nn.Linear(256, 1))

        self.q1, self.q2 = q(), q()

    def forward(self, state, action):
        sa = torch.cat([state, action], 1)
        return self.q1(sa), self.q2(sa)

    def Q1(self, state, action):  # noqa: N802 - the reference code's name
        return self.q1(torch.cat([state, action], 1))


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for target_param, source_param in zip(target.parameters(), source.parameters()):
        target_param.data.copy_((1 - tau) * target_param.data + tau * source_param.data)


class PlainTD3BC:
    """The usual single-file TD3+BC update (states already standardised in the buffer)."""

    def __init__(self, state_dim: int, action_dim: int, device: torch.device, max_action: float = 1.0,
                 discount: float = 0.99, tau: float = 0.005, policy_noise: float = 0.2,
                 noise_clip: float = 0.5, policy_freq: int = 2, alpha: float = 2.5) -> None:
        self.actor = PlainActor(state_dim, action_dim, max_action).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.critic = PlainCritic(state_dim, action_dim).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=3e-4)
        self.max_action, self.discount, self.tau = max_action, discount, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.alpha = alpha
        self.total_it = 0

    def train(self, batch) -> dict[str, float]:
        log_dict = {}
        self.total_it += 1
        state, action, reward, next_state, done = batch
        not_done = 1 - done
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_state) + noise).clamp(-self.max_action, self.max_action)
            target_q1, target_q2 = self.critic_target(next_state, next_action)
            target_q = torch.min(target_q1, target_q2)
            target_q = reward + not_done * self.discount * target_q
        current_q1, current_q2 = self.critic(state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        log_dict["critic_loss"] = critic_loss.item()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        if self.total_it % self.policy_freq == 0:
            pi = self.actor(state)
            q = self.critic.Q1(state, pi)
            lmbda = self.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, action)
            log_dict["actor_loss"] = actor_loss.item()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, self.tau)
            soft_update(self.actor_target, self.actor, self.tau)
        return log_dict


# ---------------------------------------------------------------------------------------------- harness
def make_batches(n_batches: int, batch_size: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rlkit_batches, plain_batches = [], []
    for _ in range(n_batches):
        obs = torch.randn(batch_size, OBS_DIM, generator=g)
        action = torch.rand(batch_size, ACT_DIM, generator=g) * 2 - 1
        reward = torch.randn(batch_size, generator=g)
        next_obs = torch.randn(batch_size, OBS_DIM, generator=g)
        terminated = (torch.rand(batch_size, generator=g) < 0.01).float()
        b = Batch(obs=obs, action=action, reward=reward, next_obs=next_obs, terminated=terminated,
                  indices=torch.arange(batch_size), weights=torch.ones(batch_size)).to(device)
        rlkit_batches.append(b)
        plain_batches.append([b.obs, b.action, b.reward[:, None], b.next_obs, b.terminated[:, None]])
    return rlkit_batches, plain_batches


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, batches, start: int, n: int, device: torch.device) -> float:
    """Seconds for ``n`` updates (batches ``start, start + 1, ...``), device work included."""
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(start, start + n):
        out = fn(batches[i % len(batches)])
    if isinstance(out, dict):  # read one metric so queued device work is finished
        for value in out.values():
            float(value)
            break
    synchronize(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=200, help="timed updates per variant and round")
    parser.add_argument("--block", type=int, default=20, help="updates per timed block (interleaved)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="also time TD3+BC with torch.compile")
    parser.add_argument("--all", action="store_true", help="also time AWAC")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="also time TD3+BC with cuda_graph=True (whole update replayed as CUDA graphs)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
    batches, plain_batches = make_batches(16, args.batch_size, device)

    variants = {
        "plain eager TD3+BC": (PlainTD3BC(OBS_DIM, ACT_DIM, device).train, plain_batches),
        "rlkit TD3+BC": (TD3BC(obs_space, act_space, device).update, batches),
        "rlkit IQL": (IQL(obs_space, act_space, device).update, batches),
        "rlkit CQL": (CQL(obs_space, act_space, device).update, batches),
    }
    if args.all:
        variants["rlkit AWAC"] = (AWAC(obs_space, act_space, device).update, batches)
    if args.cuda_graph:
        variants["rlkit TD3+BC (cuda_graph)"] = (TD3BC(obs_space, act_space, device, cuda_graph=True).update,
                                                 batches)
    compile_time = None
    if args.compile:
        compiled = TD3BC(obs_space, act_space, device, compile=True)
        start = time.perf_counter()
        for i in range(4):  # both loss graphs (critic every step, actor every 2nd)
            compiled.update(batches[i])
        synchronize(device)
        compile_time = time.perf_counter() - start
        variants["rlkit TD3+BC (torch.compile)"] = (compiled.update, batches)

    for fn, data in variants.values():  # warm up allocators, caches and (compiled) graphs
        for i in range(args.warmup):
            fn(data[i % len(data)])

    # each round: blocks of `block` updates, cycling through the variants, so that a change in machine
    # load during the round hits every variant alike
    rates: dict[str, list[float]] = {name: [] for name in variants}
    blocks = max(args.updates // args.block, 1)
    for _ in range(args.rounds):
        seconds = dict.fromkeys(variants, 0.0)
        for j in range(blocks):
            for name, (fn, data) in variants.items():
                seconds[name] += timed(fn, data, j * args.block, args.block, device)
        for name in variants:
            rates[name].append(blocks * args.block / seconds[name])
        print("round:", ", ".join(f"{name} {r[-1]:.1f}/s" for name, r in rates.items()), flush=True)

    plain = rates["plain eager TD3+BC"]
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} obs={OBS_DIM} "
          f"act={ACT_DIM} torch={torch.__version__}; {args.rounds} rounds x {args.updates} updates, median")
    print(f"{'variant':32s} {'updates/s':>10s} {'vs plain TD3+BC':>16s}")
    for name, values in rates.items():
        ratio = statistics.median(v / p for v, p in zip(values, plain))
        print(f"{name:32s} {statistics.median(values):10.1f} {ratio:15.2f}x")
    if compile_time is not None:
        print(f"torch.compile: first 4 updates (tracing + codegen) took {compile_time:.1f} s")


if __name__ == "__main__":
    main()
