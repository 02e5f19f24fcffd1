"""rlkit against its peers, side by side in one run: d3rlpy (TD3+BC, IQL, CQL), cpprb (PER), a plain eager
PyTorch TD3+BC (below) and numpy uniform indexing.

    pip install -e ".[bench]"                 # d3rlpy, cpprb
    python bench/peers.py                     # CPU, 2 threads, 3 rounds, all workloads
    python bench/peers.py --workloads td3bc per --rounds 5 --json peers.json
    python bench/peers.py --device cuda       # GPU (bench/gpu.sh)

Every measurement is one **fresh process** (``--worker``) that builds its side, warms up, then times whole
steps for ``--seconds``.  A step is what a training loop pays per gradient step: draw a batch of 256 from a
1M-row Hopper-sized store (obs 11, action 3) *and* update.  Sides of a workload run one after the other
(rlkit, peer, rlkit, peer, ...) round by round, so a change in the shared machine's load hits both; the
ratio is taken per round (rlkit rate / peer rate) and the median of the rounds is reported next to the
median rates and the load average.  Workloads:

* ``td3bc``: rlkit ``TD3BC`` + uniform ``ReplayBuffer.sample`` vs a plain eager TD3+BC (the authors'
  single-file structure: two ``nn.Sequential`` critics, ``torch.optim.Adam`` defaults, a per-parameter
  Polyak loop, numpy fancy-index batches, **no** ``.item()`` calls) and vs d3rlpy ``TD3PlusBC``
  (``ReplayBuffer.sample_transition_batch`` + ``update``); 2x256 networks, Fujimoto & Gu 2021 settings.
* ``iql``: rlkit ``IQL`` vs d3rlpy ``IQL`` (2x256, expectile 0.7, temperature 3).
* ``cql``: rlkit ``CQL`` vs d3rlpy ``CQL``, both 3x256 actor and critics, 10 sampled actions, automatic
  entropy tuning, no Lagrange multiplier (d3rlpy ``alpha_learning_rate=0``).
* ``per``: rlkit ``PrioritizedSampler`` (sample indices + weights, numpy gather of the 5 columns,
  ``update_priorities`` with 256 new values) vs cpprb ``PrioritizedReplayBuffer`` (``sample`` +
  ``update_priorities``), α = 0.6, β = 0.4.  ``per-batch``: rlkit's full path to a torch ``Batch``.
* ``uniform``: rlkit ``buffer.sample(256)`` (torch ``Batch``) vs ``idx = rng.integers(0, N, 256);
  col[idx]`` for the 5 columns.

No observation/reward scalers on any side (d3rlpy's would add work; rlkit's are identity until a dataset
is seen).  d3rlpy runs eagerly (its ``compile_graph`` applies to CUDA only).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OBS_DIM, ACT_DIM, ROWS, BATCH = 11, 3, 1_000_000, 256  # Hopper
WORKLOADS = {  # workload -> sides (rlkit first)
    "td3bc": ("rlkit", "plain", "d3rlpy"),
    "iql": ("rlkit", "d3rlpy"),
    "cql": ("rlkit", "d3rlpy"),
    "per": ("rlkit", "cpprb"),
    "per-batch": ("rlkit", "cpprb"),
    "uniform": ("rlkit", "numpy"),
}


# ---------------------------------------------------------------------------------------- the data
def make_data(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminated = np.zeros(rows, np.float32)
    terminated[999::1000] = 1.0
    return {"obs": rng.standard_normal((rows, OBS_DIM), dtype=np.float32),
            "action": rng.uniform(-1, 1, (rows, ACT_DIM)).astype(np.float32),
            "reward": rng.standard_normal(rows, dtype=np.float32),
            "next_obs": rng.standard_normal((rows, OBS_DIM), dtype=np.float32),
            "terminated": terminated}


def spaces():
    import gymnasium as gym

    return (gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
            gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32))


def rlkit_buffer(data: dict[str, np.ndarray], device: torch.device, **extra):
    from rlkit.replay import ColumnarStorage, ReplayBuffer, UniformSampler

    storage = ColumnarStorage(len(data["obs"]), {k: (v.shape[1:], v.dtype) for k, v in data.items()})
    buffer = ReplayBuffer(storage, UniformSampler(seed=1), device=device, **extra)
    buffer.add(**data)
    return buffer


def d3rlpy_dataset(data: dict[str, np.ndarray]):
    import d3rlpy

    return d3rlpy.dataset.MDPDataset(data["obs"], data["action"], data["reward"][:, None],
                                     data["terminated"][:, None])


# ---------------------------------------------------------------------------------------- plain baseline
class PlainActor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, max_action: float = 1.0) -> None:
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

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sa = torch.cat([state, action], 1)
        return self.q1(sa), self.q2(sa)

    def Q1(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # noqa: N802 - reference name
        return self.q1(torch.cat([state, action], 1))


class PlainTD3BC:
    """The TD3+BC authors' single-file update (Fujimoto & Gu 2021, Algorithm 1), minus ``.item()``."""

    def __init__(self, device: torch.device, discount: float = 0.99, tau: float = 0.005,
                 policy_noise: float = 0.2, noise_clip: float = 0.5, policy_freq: int = 2,
                 alpha: float = 2.5) -> None:
        self.actor = PlainActor(OBS_DIM, ACT_DIM).to(device)
        self.actor_target = copy.deepcopy(self.actor)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=3e-4)
        self.critic = PlainCritic(OBS_DIM, ACT_DIM).to(device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=3e-4)
        self.discount, self.tau, self.policy_noise = discount, tau, policy_noise
        self.noise_clip, self.policy_freq, self.alpha = noise_clip, policy_freq, alpha
        self.total_it = 0

    def train(self, state, action, next_state, reward, not_done) -> dict[str, torch.Tensor]:
        self.total_it += 1
        with torch.no_grad():
            noise = (torch.randn_like(action) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            next_action = (self.actor_target(next_state) + noise).clamp(-1.0, 1.0)
            target_q1, target_q2 = self.critic_target(next_state, next_action)
            target_q = reward + not_done * self.discount * torch.min(target_q1, target_q2)
        current_q1, current_q2 = self.critic(state, action)
        critic_loss = F.mse_loss(current_q1, target_q) + F.mse_loss(current_q2, target_q)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        out = {"critic_loss": critic_loss.detach()}
        if self.total_it % self.policy_freq == 0:
            pi = self.actor(state)
            q = self.critic.Q1(state, pi)
            lmbda = self.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, action)
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()
            for net, target in ((self.critic, self.critic_target), (self.actor, self.actor_target)):
                for param, target_param in zip(net.parameters(), target.parameters()):
                    target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
            out["actor_loss"] = actor_loss.detach()
        return out


# ---------------------------------------------------------------------------------------- one side's step
def build_step(workload: str, side: str, device: torch.device, rows: int):
    """A zero-argument callable doing one step (batch draw + update, or one replay round trip)."""
    data = make_data(rows)
    if workload in ("td3bc", "iql", "cql") and side == "rlkit":
        from rlkit.algorithms.offline.cql import CQL
        from rlkit.algorithms.offline.iql import IQL
        from rlkit.algorithms.offline.td3bc import TD3BC

        obs_space, act_space = spaces()
        algo = {"td3bc": lambda: TD3BC(obs_space, act_space, device),
                "iql": lambda: IQL(obs_space, act_space, device),
                "cql": lambda: CQL(obs_space, act_space, device)}[workload]()
        buffer = rlkit_buffer(data, device)
        keys = ("obs", "action", "reward", "next_obs", "terminated")
        return lambda: algo.update(buffer.sample(BATCH, keys=keys))
    if workload in ("td3bc", "iql", "cql") and side == "d3rlpy":
        import d3rlpy

        dataset = d3rlpy_dataset(data)
        dev = "cuda:0" if device.type == "cuda" else False
        if workload == "td3bc":
            algo = d3rlpy.algos.TD3PlusBCConfig(batch_size=BATCH).create(device=dev)
        elif workload == "iql":
            algo = d3rlpy.algos.IQLConfig(batch_size=BATCH).create(device=dev)
        else:
            enc = d3rlpy.models.encoders.VectorEncoderFactory(hidden_units=[256, 256, 256])
            algo = d3rlpy.algos.CQLConfig(batch_size=BATCH, actor_encoder_factory=enc, critic_encoder_factory=enc,
                                          alpha_learning_rate=0.0, n_action_samples=10).create(device=dev)
        algo.build_with_dataset(dataset)
        return lambda: algo.update(dataset.sample_transition_batch(BATCH))
    if workload == "td3bc" and side == "plain":
        algo = PlainTD3BC(device)
        rng = np.random.default_rng(1)
        obs, action, reward, next_obs = data["obs"], data["action"], data["reward"][:, None], data["next_obs"]
        not_done = 1.0 - data["terminated"][:, None]

        def plain_step():
            idx = rng.integers(0, rows, BATCH)
            cols = [torch.from_numpy(c[idx]).to(device) for c in (obs, action, next_obs, reward, not_done)]
            return algo.train(*cols)

        return plain_step
    if workload in ("per", "per-batch") and side == "rlkit":
        from rlkit.replay import PrioritizedSampler

        per = PrioritizedSampler(alpha=0.6, beta=0.4, seed=2)
        buffer = rlkit_buffer(data, device, extra_samplers={"per": per})
        storage, rng = buffer.storage, np.random.default_rng(3)
        if workload == "per":
            def per_step():
                idx, weights = per.sample(BATCH, storage)
                cols = storage._gather(idx)
                per.update_priorities(idx, rng.random(BATCH) + 1e-3)
                return cols, weights
            return per_step

        def per_batch_step():
            batch = buffer.sample(BATCH, sampler="per")
            buffer.update_priorities(batch.indices, torch.from_numpy(rng.random(BATCH) + 1e-3), sampler="per")
            return batch
        return per_batch_step
    if workload in ("per", "per-batch") and side == "cpprb":
        import cpprb

        env_dict = {"obs": {"shape": OBS_DIM}, "act": {"shape": ACT_DIM}, "rew": {}, "next_obs": {"shape": OBS_DIM},
                    "done": {}}
        rb = cpprb.PrioritizedReplayBuffer(rows, env_dict, alpha=0.6)
        rb.add(obs=data["obs"], act=data["action"], rew=data["reward"], next_obs=data["next_obs"],
               done=data["terminated"])
        rng = np.random.default_rng(3)

        def cpprb_step():
            sample = rb.sample(BATCH, beta=0.4)
            rb.update_priorities(sample["indexes"], rng.random(BATCH) + 1e-3)
            return sample
        return cpprb_step
    if workload == "uniform" and side == "rlkit":
        buffer = rlkit_buffer(data, device)
        keys = ("obs", "action", "reward", "next_obs", "terminated")
        return lambda: buffer.sample(BATCH, keys=keys)
    if workload == "uniform" and side == "numpy":
        rng = np.random.default_rng(1)
        cols = [data[k] for k in ("obs", "action", "reward", "next_obs", "terminated")]

        def numpy_step():
            idx = rng.integers(0, rows, BATCH)
            return [c[idx] for c in cols]
        return numpy_step
    raise ValueError(f"no side {side!r} for workload {workload!r}")


def _settle(out, device: torch.device) -> None:
    """Wait for queued device work (CUDA) so that the timed span covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker(workload: str, side: str, device: torch.device, seconds: float, warmup: int, rows: int,
           threads: int, flush_peers: bool = False) -> dict:
    if side == "rlkit":  # what an rlkit run sets at start-up: the thread count and flushed subnormals
        from rlkit.runtime import configure_runtime

        configure_runtime(threads, flush_denormal=True)
    elif flush_peers:
        torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    fn = build_step(workload, side, device, rows)
    setup = time.perf_counter() - t0
    start = time.perf_counter()  # warm-up: `warmup` steps, cut short after 2 s (but at least 3 steps)
    for i in range(warmup):
        out = fn()
        if i >= 2 and time.perf_counter() - start > 2.0:
            break
    _settle(out, device)
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        out = fn()
        steps += 1
        if time.perf_counter() - start >= seconds:
            _settle(out, device)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            break
    return {"workload": workload, "side": side, "steps_per_s": steps / elapsed, "steps": steps,
            "steps_per_cpu_s": steps / max(cpu, 1e-9),
            "setup_s": setup, "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------- the driver
def machine() -> dict:
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for name in ("d3rlpy", "cpprb"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_side(args, workload: str, side: str) -> dict | None:
    cmd = [sys.executable, __file__, "--worker", workload, side, "--device", args.device,
           "--threads", str(args.threads), "--seconds", str(args.seconds), "--warmup", str(args.warmup),
           "--rows", str(args.rows)] + (["--flush-peers"] if args.flush_peers else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {workload}/{side} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def available(side: str) -> str | None:
    """Why a side cannot run here (missing optional package), or None."""
    module = {"d3rlpy": "d3rlpy", "cpprb": "cpprb"}.get(side)
    if module is None:
        return None
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every side (see README)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per side and round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--flush-peers", action="store_true",
                        help="give the peers rlkit's flush-subnormals setting too (rlkit always has it)")
    parser.add_argument("--json", default="bench/peers.json", help="where to write all results")
    parser.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.worker:
        torch.manual_seed(0)
        print(json.dumps(worker(*args.worker, device, args.seconds, args.warmup, args.rows, args.threads,
                                args.flush_peers)))
        return

    info = machine()
    info.update(device=args.device, threads=args.threads, flush_peers=args.flush_peers, rounds=args.rounds,
                seconds=args.seconds,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_start=os.getloadavg())
    print(json.dumps(info), flush=True)
    skipped = {}
    plan = []
    for workload in args.workloads:
        sides = []
        for side in WORKLOADS[workload]:
            reason = available(side)
            if reason:
                skipped[f"{workload}/{side}"] = reason
                print(f"skip {workload}/{side}: {reason}", flush=True)
            else:
                sides.append(side)
        plan.append((workload, sides))

    records: dict[str, dict[str, list[float]]] = {w: {s: [] for s in sides} for w, sides in plan}
    cpu_records: dict[str, dict[str, list[float]]] = {w: {s: [] for s in sides} for w, sides in plan}
    for r in range(args.rounds):
        for workload, sides in plan:
            line = []
            for side in sides:
                res = run_side(args, workload, side)
                records[workload][side].append(res["steps_per_s"] if res else float("nan"))
                cpu_records[workload][side].append(res["steps_per_cpu_s"] if res else float("nan"))
                if res:
                    line.append(f"{side} {res['steps_per_s']:.1f}/s wall {res['steps_per_cpu_s']:.1f}/s cpu "
                                f"(load {res['load']:.1f})")
            print(f"round {r + 1} {workload}: " + ", ".join(line), flush=True)

    results = {}
    print("\nsteps/s: wall clock | per CPU-second of the process (robust to other processes on shared cores); "
          "ratio = rlkit / side, median over rounds (per-round ratios in brackets)")
    print(f"{'workload':10s} {'side':8s} {'wall/s':>9s} {'cpu/s':>9s} {'ratio wall':>11s} {'ratio cpu':>10s}  "
          "rounds (cpu)")
    for workload, sides in plan:
        results[workload] = {}
        for side in sides:
            entry = {}
            for kind, rec in (("wall", records), ("cpu", cpu_records)):
                rates, rl = rec[workload][side], rec[workload].get("rlkit", [])
                entry[kind] = {"rates": rates, "median": statistics.median(rates)}
                if side != "rlkit" and rl:
                    ratios = [a / b for a, b in zip(rl, rates)]
                    entry[kind].update(ratios=ratios, ratio=statistics.median(ratios))
            results[workload][side] = entry
            ratio = (f"{entry['wall']['ratio']:10.2f}x {entry['cpu']['ratio']:9.2f}x  ["
                     + " ".join(f"{x:.2f}" for x in entry["cpu"]["ratios"]) + "]") if side != "rlkit" else ""
            print(f"{workload:10s} {side:8s} {entry['wall']['median']:9.1f} {entry['cpu']['median']:9.1f} {ratio}")
    info["load_end"] = os.getloadavg()
    print(f"load average (1/5/15 min) at start {info['load_start']}, at end {info['load_end']} on "
          f"{info['cpus']} cores")
    out = {"machine": info, "results": results, "skipped": skipped}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
