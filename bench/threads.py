"""Thread policy: TD3+BC steps/s (uniform batch draw + update, Hopper sizes) with 1 and 2 torch threads,
alone and next to a concurrent evaluation (a second process rolling out a 2x256 policy in Hopper-v5, as an
evaluation or a second run would).  Fresh process per measurement, rounds interleaved, medians printed
with the load average; the numbers behind ``num_threads: null`` in ``rlkit/runtime.py``.

    python bench/threads.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEERS = str(Path(__file__).with_name("peers.py"))

EVAL_LOOP = """
import gymnasium as gym, torch, time
torch.set_num_threads(1)
policy = torch.nn.Sequential(torch.nn.Linear(11, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                             torch.nn.Linear(256, 3), torch.nn.Tanh())
env = gym.make("Hopper-v5")
obs, _ = env.reset(seed=0)
end = time.time() + {seconds}
while time.time() < end:
    with torch.no_grad():
        action = policy(torch.as_tensor(obs, dtype=torch.float32)).numpy()
    obs, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        obs, _ = env.reset()
"""


def measure(threads: int, concurrent: bool, seconds: float) -> float:
    evaluator = None
    if concurrent:
        evaluator = subprocess.Popen([sys.executable, "-c", EVAL_LOOP.format(seconds=seconds + 30)])
    try:
        out = subprocess.run([sys.executable, PEERS, "--worker", "td3bc", "rlkit", "--threads", str(threads),
                              "--seconds", str(seconds)], capture_output=True, text=True, check=True)
    finally:
        if evaluator is not None:
            evaluator.kill()
            evaluator.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cases = [(t, c) for c in (False, True) for t in (1, 2)]
    rates: dict[str, list[float]] = {f"{t} thread(s){' + eval' if c else ''}": [] for t, c in cases}
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()}", flush=True)
    for r in range(args.rounds):
        for (t, c), name in zip(cases, rates):
            rates[name].append(measure(t, c, args.seconds))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in rates.items()),
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    for name, values in rates.items():
        print(f"{name:24s} {statistics.median(values):8.1f} steps/s  (rounds: "
              + " ".join(f"{v:.1f}" for v in values) + ")")
    two_one = [b / a for a, b in zip(rates["1 thread(s)"], rates["2 thread(s)"])]
    two_one_eval = [b / a for a, b in zip(rates["1 thread(s) + eval"], rates["2 thread(s) + eval"])]
    print(f"2 threads / 1 thread: alone {statistics.median(two_one):.2f}x, with a concurrent evaluation "
          f"{statistics.median(two_one_eval):.2f}x; load average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rates": rates, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                   time.gmtime()), "load": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
