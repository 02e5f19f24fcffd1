"""SPR / VCR costs, measured in one run: seconds per update of SPR vs VCR-discrete (Atari 100k, paper size: batch
32, K = 5, 84x84x4) and of DrQ (VCR with weight 0) vs VCR-continuous (DMC pixels, paper size: batch 512, hidden
1024, K = 5, N = 10), each ratio against its base measured here; seconds per environment step of the SPR
Atari protocol and of a DMC pixel task (EGL rendering); and what one 100k-step Atari run / 500k-frame DMC run
costs on this machine (updates per env step: 2 on Atari, 1 on DMC).

Usage: ``python bench/spr_vcr.py [--updates 5] [--env-steps 200] [--threads 1] [--device cpu|cuda] [--size paper|cpu]``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from rlkit import envs
from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr import VCR

ATARI_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
DMC_OBS = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)


def discrete_batch(b: int, k: int, device: str) -> dict:
    obs = torch.randint(0, 256, (b, k + 1, 4, 84, 84), dtype=torch.uint8, device=device)
    return {"obs": obs[:, 0], "window_obs": obs, "window_action": torch.randint(0, 6, (b, k), device=device),
            "window_valid": torch.ones(b, k + 1, device=device), "action": torch.randint(0, 6, (b,), device=device),
            "reward": torch.randn(b, device=device), "discount": torch.full((b,), 0.9, device=device),
            "weights": torch.ones(b, device=device), "next_obs": obs[:, 1]}


def continuous_batch(b: int, k: int, device: str) -> dict:
    obs = torch.randint(0, 256, (b, max(k + 1, 2), 9, 84, 84), dtype=torch.uint8, device=device)
    return {"obs": obs[:, 0], "next_obs": obs[:, 1], "action": torch.rand(b, 6, device=device) * 2 - 1,
            "reward": torch.rand(b, device=device), "terminated": torch.zeros(b, device=device),
            "weights": torch.ones(b, device=device), "window_obs": obs[:, :k + 1],
            "window_action": torch.rand(b, k + 1, 6, device=device) * 2 - 1,
            "window_valid": torch.ones(b, k + 1, device=device)}


def seconds_per_update(algo, batch: dict, updates: int) -> float:
    algo.update(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(updates):
        algo.update(batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / updates


def seconds_per_env_step(name: str, steps: int, **kwargs) -> float:
    env = envs.make(name, **kwargs)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--env-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="paper", choices=("paper", "cpu"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    cont = {} if args.size == "paper" else {"batch_size": 128, "hidden": [256, 256], "transition_hidden": [256],
                                            "target_augs": 1, "q_augs": 1}
    b_cont = cont.get("batch_size", 512)
    spr = SPR(ATARI_OBS, gym.spaces.Discrete(6), device=dev)
    vcr = VCR(observation_space=ATARI_OBS, action_space=gym.spaces.Discrete(6), device=dev)
    batch = discrete_batch(32, 5, dev)
    t_spr, t_vcr = seconds_per_update(spr, batch, args.updates), seconds_per_update(vcr, batch, args.updates)
    box = gym.spaces.Box(-1, 1, (6,), np.float32)
    drq = VCR(observation_space=DMC_OBS, action_space=box, device=dev, vcr_weight=0.0,
              continuous={**cont, "prediction_depth": 0})
    vcrc = VCR(observation_space=DMC_OBS, action_space=box, device=dev, continuous=cont)
    t_drq = seconds_per_update(drq, continuous_batch(b_cont, 0, dev), args.updates)
    t_vcrc = seconds_per_update(vcrc, continuous_batch(b_cont, 5, dev), args.updates)
    e_atari = seconds_per_env_step("atari100k-pong", args.env_steps, protocol="spr", training=True)
    e_dmc = seconds_per_env_step("dmc-cheetah_run", args.env_steps // 4, obs_type="pixels", action_repeat=4)
    print(f"device {dev}, {args.threads} thread(s), size {args.size}")
    print(f"SPR update            {t_spr * 1e3:9.1f} ms   (batch 32, K=5)")
    print(f"VCR-discrete update   {t_vcr * 1e3:9.1f} ms   ratio vs SPR {t_vcr / t_spr:.2f}x")
    print(f"DrQ update            {t_drq * 1e3:9.1f} ms   (batch {b_cont})")
    print(f"VCR-continuous update {t_vcrc * 1e3:9.1f} ms   ratio vs DrQ {t_vcrc / t_drq:.2f}x")
    print(f"env step: atari100k-pong protocol=spr {e_atari * 1e3:.2f} ms; dmc-cheetah_run pixels (repeat 4) "
          f"{e_dmc * 1e3:.1f} ms")
    atari_run = 100_000 * (e_atari + 2 * t_vcr)
    dmc_run = 125_000 * (e_dmc + t_vcrc)
    print(f"per env step: VCR Atari {(e_atari + 2 * t_vcr) * 1e3:.0f} ms -> 100k steps {atari_run / 3600:.1f} h; "
          f"VCR DMC cheetah {(e_dmc + t_vcrc) * 1e3:.0f} ms -> 500k frames {dmc_run / 3600:.1f} h")


if __name__ == "__main__":
    main()
