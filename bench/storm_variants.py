"""STORM world model: post-norm vs SiameseNorm (Li et al. 2026) and softmax vs slide attention (Pan et al.
2023), CPU-sized, on one Atari game.

    python bench/storm_variants.py                          # Pong, 2 seeds, 300 updates, 1 thread
    python bench/storm_variants.py --seeds 0 1 2 --updates 1000 --device cuda --model paper

Protocol (the same for every variant): ``--steps`` random-policy transitions of ``atari100k-<game>`` are
collected once (seed 0); the first 80% are the training stream, the rest the held-out stream. For each
variant and seed the world model (STORM's, reduced: ``--model tiny``) is trained for ``--updates``
world-model updates on windows drawn by a generator seeded with the seed (so every variant of one seed
sees the same windows). Reported per variant (mean over seeds, and the spread):
* train: the total world-model loss averaged over the last 20% of updates;
* held-out (eval mode, the same latent-sample noise for every variant): total, reconstruction, reward,
  termination and dynamics KL terms on 16 fixed windows;
* imagination: ms per imagined step (cached rollout: prefill a context, then step), batch 64, eval mode;
* world-model update: ms per update.
No paper has these numbers for RL world models; the table reports what this run measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlkit import envs  # noqa: E402
from rlkit.algorithms.world_models.storm import STORM  # noqa: E402

VARIANTS = {
    "post+softmax": dict(norm="post", attention="softmax"),
    "siamese+softmax": dict(norm="siamese", attention="softmax"),
    "post+slide": dict(norm="post", attention="slide"),
    "siamese+slide": dict(norm="siamese", attention="slide"),
}
MODELS = {
    "tiny": dict(encoder_channels=[8, 16, 32, 32], latent_vars=8, latent_classes=8, head_hidden=64,
                 agent_hidden=64, transformer=dict(d_model=64, n_heads=4, d_ff=128, max_len=64)),
    "paper": dict(),
}
TERMS = ("loss", "reconstruction", "reward", "termination", "dynamics")


def collect(game: str, steps: int) -> dict[str, np.ndarray]:
    """Random-policy transitions (obs_t, a_t, r_t, terminated_t, life_loss_t), one stream, seed 0."""
    env = envs.make(f"atari100k-{game}")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    cols: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "terminated", "life_loss")}
    for _ in range(steps):
        a = int(rng.integers(env.action_space.n))
        nxt, r, term, trunc, info = env.step(a)
        for k, v in zip(cols, (obs, a, r, float(term), float(info.get("life_loss", False)))):
            cols[k].append(v)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    out = {k: np.asarray(v) for k, v in cols.items()}
    out["n_actions"] = np.asarray(env.action_space.n)
    return out


def windows(data: dict, lo: int, hi: int, n: int, length: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    starts = torch.randint(lo, hi - length, (n,), generator=gen).tolist()
    idx = np.stack([np.arange(s, s + length) for s in starts])
    return {k: torch.as_tensor(data[k][idx]) for k in ("obs", "action", "reward", "terminated", "life_loss")}


def run_variant(name: str, data: dict, seed: int, args) -> dict[str, float]:
    torch.manual_seed(seed)
    model = MODELS[args.model]
    tcfg = {**model.get("transformer", {}), **VARIANTS[name], "window": args.window}
    obs_space = gym.spaces.Box(0, 255, data["obs"].shape[1:], np.uint8)
    act_space = gym.spaces.Discrete(int(data["n_actions"]))
    algo = STORM(obs_space, act_space, device=args.device, **{**model, "transformer": tcfg},
                 wm_batch_size=args.batch, wm_seq_len=args.seq_len, imagine_context=8, imagine_horizon=16,
                 act_context=8, precision="fp32")
    n = len(data["action"])
    split = int(0.8 * n)
    gen = torch.Generator().manual_seed(1000 + seed)
    dev = algo.device
    train_losses, t_update = [], 0.0
    for _ in range(args.updates):
        batch = {k: v.to(dev) for k, v in windows(data, 0, split, args.batch, args.seq_len, gen).items()}
        t0 = time.perf_counter()
        out = algo.update_world_model(batch)
        t_update += time.perf_counter() - t0
        train_losses.append(float(out["wm/loss"]))
        if args.progress and len(train_losses) % args.progress == 0:
            print(f"    {name} seed {seed}: update {len(train_losses)}, loss {train_losses[-1]:.4g}, "
                  f"{1e3 * t_update / len(train_losses):.0f} ms/update", flush=True)
    held = windows(data, split, n, 16, args.seq_len, torch.Generator().manual_seed(7))
    held = {k: v.to(dev) for k, v in held.items()}
    algo.world_model.eval()
    with torch.no_grad():
        torch.manual_seed(123)
        losses = algo.world_model_losses(held)
        ctx = windows(data, split, n, 64, 8, torch.Generator().manual_seed(8))
        ctx = {k: v.to(dev) for k, v in ctx.items()}
        algo.imagine(ctx["obs"], ctx["action"])  # warm-up
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            algo.imagine(ctx["obs"], ctx["action"])
        t_imag = (time.perf_counter() - t0) / reps / algo.imagine_horizon
    tail = train_losses[int(0.8 * len(train_losses)):]
    res = {f"held_{k}": float(losses[k]) for k in TERMS}
    res.update(train_loss=statistics.mean(tail), imagine_ms_per_step=1e3 * t_imag,
               update_ms=1e3 * t_update / args.updates)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="pong")
    p.add_argument("--steps", type=int, default=3000, help="random-policy transitions collected once")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--window", type=int, default=8, help="slide window (tokens)")
    p.add_argument("--model", choices=list(MODELS), default="tiny")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", type=int, default=0, help="print every N updates (0: never)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = collect(args.game, args.steps)
    print(f"collected {args.steps} random-policy steps of atari100k-{args.game} in {time.perf_counter() - t0:.0f} s; "
          f"model {args.model}, {args.updates} updates of {args.batch}x{args.seq_len}, window {args.window}, "
          f"seeds {args.seeds}, device {args.device} ({args.threads} thread(s))", flush=True)
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        for name in args.variants:
            r = run_variant(name, data, seed, args)
            results.setdefault(name, []).append(r)
            print(f"  seed {seed} {name:>16}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()), flush=True)
    cols = ["train_loss"] + [f"held_{k}" for k in TERMS] + ["imagine_ms_per_step", "update_ms"]
    print("\nmean over seeds (+- half range)")
    print(f"{'variant':>16}" + "".join(f"{c:>22}" for c in cols))
    base = {c: statistics.mean(r[c] for r in results[args.variants[0]]) for c in cols}
    for name, rs in results.items():
        cells = []
        for c in cols:
            vals = [r[c] for r in rs]
            cells.append(f"{statistics.mean(vals):.4g} +- {(max(vals) - min(vals)) / 2:.2g}")
        print(f"{name:>16}" + "".join(f"{x:>22}" for x in cells))
    print(f"\nratio to {args.variants[0]} (same run)")
    for name, rs in results.items():
        print(f"{name:>16}" + "".join(f"{statistics.mean(r[c] for r in rs) / base[c]:>21.3f}x" for c in cols))


if __name__ == "__main__":
    main()
