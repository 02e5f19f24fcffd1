"""``rlkit diagnose``: growth fits on closed-form curves, the SGD crash-step prediction on real TD dynamics,
the verdict rules, the CLI (exit codes, outputs, TensorBoard-only runs), and the end-to-end demonstration:
TD3 without behaviour regularisation on a tiny hopper dataset diverges, SEEM raises the alarm before Q
explodes, and the same run with a LayerNorm critic stays bounded and is judged stable."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rlkit import trainer
from rlkit.cli import main as rlkit_main
from rlkit.diagnostics.divergence import (
    Thresholds,
    alarm_step,
    diagnose,
    fit_blowup,
    fit_exponential,
    fit_power,
    overflow_step,
    series,
)

STEPS = np.arange(100, 5001, 100)


def records_from(**columns) -> list[dict]:
    steps = columns.pop("steps", STEPS)
    return [{"step": int(s), **{k.replace("__", "/"): float(v[i]) for k, v in columns.items()}}
            for i, s in enumerate(steps)]


# ------------------------------------------------------------------------------------------ fits
def test_fits_recover_closed_form_growth_laws():
    power = fit_power(STEPS, 0.5 * STEPS.astype(float) ** 3)
    assert power.param == pytest.approx(3.0, abs=1e-9) and power.r2 == pytest.approx(1.0)
    expo = fit_exponential(STEPS, 2.0 * np.exp(1e-3 * STEPS))
    assert expo.param == pytest.approx(1e-3, rel=1e-9) and expo.r2 == pytest.approx(1.0)
    blow = fit_blowup(STEPS, 3.0 * (6000.0 - STEPS) ** -0.5)
    assert blow.t_star == pytest.approx(6000.0, rel=1e-3) and blow.param == pytest.approx(0.5, rel=1e-2)
    # the step where 3 (t* - t)^-0.5 reaches float32's max: t* - (3 / 3.4e38)^2, i.e. t* itself
    assert overflow_step(blow) == pytest.approx(6000.0, rel=1e-3)
    # polynomial and exponential growth have no finite blow-up time
    assert fit_blowup(STEPS, STEPS.astype(float) ** 2) is None
    assert fit_blowup(STEPS, np.exp(1e-3 * STEPS)) is None


def sgd_td_divergence(lr: float = 5e-4, every: int = 25, seed: int = 0):
    """Full-batch SGD on TD regression with the target moving with the network (hard target) for a
    bias-free 2-layer ReLU critic (degree-2 homogeneous) on random data: a self-exciting system that
    overflows at a finite step.  Returns the logged records and the first non-finite step."""
    g = torch.Generator().manual_seed(seed)
    n, d, h, gamma = 64, 6, 32, 0.99
    x, x_next, reward = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.rand(n, generator=g)
    w1 = (torch.randn(d, h, generator=g) / math.sqrt(d)).requires_grad_()
    w2 = (torch.randn(h, 1, generator=g) / math.sqrt(h)).requires_grad_()

    def q(z):
        return (torch.relu(z @ w1) @ w2).squeeze(-1)

    records = []
    for t in range(1, 20_000):
        with torch.no_grad():
            target = reward + gamma * q(x_next)
        grads = torch.autograd.grad(0.5 * (q(x) - target).pow(2).mean(), [w1, w2])
        with torch.no_grad():
            w1 -= lr * grads[0]
            w2 -= lr * grads[1]
            q_max = float(q(x).abs().max())
            norm = math.sqrt(float(w1.pow(2).sum() + w2.pow(2).sum()))
        if not (math.isfinite(q_max) and math.isfinite(norm)):
            return records, t, float(reward.max()) / (1 - gamma)
        if t % every == 0:
            records.append({"step": t, "diag/q_max": q_max, "diag/param_norm": norm})
    raise AssertionError("the SGD critic did not diverge")


def test_sgd_crash_step_is_predicted_from_early_growth():
    """Fit on the records while |Q| is still below 1.5 × max|r|/(1-γ) (hundreds of steps before the crash);
    the predicted float32 overflow step must land within 15% of the remaining horizon of the real one."""
    records, crash, q_bound = sgd_td_divergence()
    early = [r for r in records if r["diag/q_max"] < 1.5 * q_bound]
    last = early[-1]["step"]
    assert crash - last > 200
    verdict = diagnose(early, optimizer="sgd", q_bound=q_bound)
    assert verdict.crash_step is not None
    assert abs(verdict.crash_step - crash) < 0.15 * (crash - last)
    # measured growth near the singularity: ||θ|| ~ (t* - t)^(-p) with p ≈ 1/2, Q with about twice that
    assert 0.35 < verdict.norm_growth.blowup.param < 0.65
    assert 1.6 < verdict.q_growth.blowup.param / verdict.norm_growth.blowup.param < 2.4
    # with Adam assumed, no crash step is claimed
    assert diagnose(early, optimizer="adam", q_bound=q_bound).crash_step is None


# ------------------------------------------------------------------------------------------ rules
def test_alarm_needs_consecutive_evaluations_above_threshold():
    th = Thresholds(seem_threshold=0.2, consecutive=3)
    seem = series(records_from(steps=np.arange(1, 9), diag__seem_normalized=[0, 0.5, 0.6, 0.01, 0.3, 0.4, 0.5, 0.7]),
                  "diag/seem_normalized")
    assert alarm_step(seem, th) == 7
    assert alarm_step(seem, Thresholds(seem_threshold=0.2, consecutive=2)) == 3
    nan_run = series(records_from(steps=np.arange(1, 4), diag__seem_normalized=[0.5, math.nan, 0.5]),
                     "diag/seem_normalized")
    assert alarm_step(nan_run, Thresholds(seem_threshold=0.2, consecutive=2)) is None


def test_verdicts_on_synthetic_runs():
    t = STEPS.astype(float)
    bound = np.full(len(t), 200.0)
    stable = records_from(diag__q_max=150 * (1 - np.exp(-t / 800)), diag__q_bound=bound,
                          diag__seem_normalized=np.zeros(len(t)), diag__param_norm=10 + 0 * t)
    assert diagnose(stable).status == "stable"
    diverging = records_from(diag__q_max=1e-7 * t**3, diag__q_bound=bound, diag__param_norm=0.01 * t,
                             diag__seem_normalized=np.where(t >= 1000, 0.7, 0.0))
    v = diagnose(diverging)
    assert v.status == "diverged" and v.exit_code == 1
    assert v.diverged_at == int(t[np.argmax(1e-7 * t**3 > 2000)])
    assert v.alarm_at == 1000 + 100 * (v.thresholds.consecutive - 1)
    assert v.lead_steps == v.diverged_at - v.alarm_at > 0
    assert v.q_growth.power.param == pytest.approx(3.0, abs=1e-6)
    assert v.norm_growth.power.param == pytest.approx(1.0, abs=1e-6)
    # cut before Q leaves the bound: SEEM alone predicts it
    assert diagnose([r for r in diverging if r["step"] <= 2000]).status == "predicted"
    # a non-finite Q is a crash, whatever the bound
    crashed = records_from(steps=STEPS[:5], diag__q_max=[1, 2, 3, math.inf, math.nan], diag__q_bound=bound[:5])
    assert diagnose(crashed).diverged_at == 400


def test_fallback_rule_without_a_reward_bound():
    """Only train/q_mean logged: saturating learning from Q ≈ 0 is stable even though it gains orders of
    magnitude; still-accelerating growth far above the early level is divergence."""
    t = STEPS.astype(float)
    learning = records_from(train__q_mean=0.01 + 300 * (1 - np.exp(-t / 500)))
    v = diagnose(learning)
    assert v.status == "stable" and v.q_key == "train/q_mean" and v.notes
    exploding = records_from(train__q_mean=0.01 + 1e-6 * t**3)
    assert diagnose(exploding).status == "diverged"


# ------------------------------------------------------------------------------------------ CLI
def write_jsonl(path, records):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert rlkit_main(["diagnose", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert rlkit_main(["diagnose", str(empty)]) == 2
    write_jsonl(tmp_path / "noq", [{"step": 1, "eval/return_mean": 3.0}])
    assert rlkit_main(["diagnose", str(tmp_path / "noq")]) == 2
    assert rlkit_main(["diagnose", str(tmp_path / "noq"), "--consecutive", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("rlkit: error:") == 4 and "Traceback" not in err


def test_cli_writes_verdict_and_plot_and_reads_tensorboard(tmp_path, capsys):
    t = STEPS.astype(float)
    records = records_from(diag__q_max=1e-7 * t**3, diag__q_bound=np.full(len(t), 200.0),
                           diag__param_norm=0.01 * t, diag__seem_normalized=np.where(t >= 1000, 0.7, 0.0))
    run = tmp_path / "run"
    write_jsonl(run, records)
    assert rlkit_main(["diagnose", str(run)]) == 1
    verdict = json.loads((run / "diagnose.json").read_text())
    assert verdict["status"] == "diverged" and verdict["lead_steps"] > 0
    assert (run / "diagnose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "early-warning lead" in capsys.readouterr().out

    from torch.utils.tensorboard import SummaryWriter

    tb_run = tmp_path / "tb_only"
    writer = SummaryWriter(str(tb_run / "tb"))
    for rec in records:
        for key, value in rec.items():
            if key != "step":
                writer.add_scalar(key, value, rec["step"])
    writer.close()
    assert rlkit_main(["diagnose", str(tb_run), "--no-plot"]) == 1
    from_tb = json.loads((tb_run / "diagnose.json").read_text())
    for key in ("status", "diverged_at", "alarm_at", "lead_steps"):
        assert from_tb[key] == verdict[key]


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_hopper(tmp_path_factory):
    from rlkit.data.collect import collect_to_file

    path = tmp_path_factory.mktemp("seem-data") / "hopper-random-1k.hdf5"
    return collect_to_file("hopper-random-v2", steps=1000, seed=0, out=path, num_envs=4)


def td3_without_bc(data, run_dir, steps, hidden, batch, probe, interval, layernorm):
    """TD3+BC with the BC term made negligible and a hard target copy (SEEM's divergence study, Yue et al. 2023).
    ``alpha = 1e6`` scales the Q term so that Adam's update is the pure TD3 actor step (the BC gradient is
    1e-6 of it); ``tau = 1`` copies the online critic into the target at every policy update."""
    return ["algo=td3bc", "env=hopper-random", f"env.dataset.path={data}", "env.dataset.source=file",
            f"train.steps={steps}", "train.log_interval=100", "eval.interval=0", "eval.episodes=1",
            "eval.num_envs=1", "checkpoint.interval=0", "algo.alpha=1e6", "algo.tau=1.0",
            f"algo.hidden={hidden}", f"train.batch_size={batch}", f"algo.critic_layernorm={layernorm}",
            f"diagnostics.seem.interval={interval}", f"diagnostics.seem.batch={probe}", f"run_dir={run_dir}"]


def check_demonstration(compose_cfg, data, tmp_path, steps, hidden, batch, probe, interval, ln_steps,
                        ln_interval=None, plot=False):
    """Run both arms, diagnose them through the CLI, return (diverging verdict, LayerNorm verdict)."""
    from rlkit.logger import read_metrics

    flags = [] if plot else ["--no-plot"]

    diverging = tmp_path / "td3"
    trainer.run(compose_cfg(*td3_without_bc(data, diverging, steps, hidden, batch, probe, interval, False)))
    assert rlkit_main(["diagnose", str(diverging), *flags]) == 1
    v = json.loads((diverging / "diagnose.json").read_text())
    assert v["status"] == "diverged" and v["alarm_at"] is not None
    assert v["alarm_at"] < v["diverged_at"], "SEEM must warn before Q explodes"
    records = read_metrics(diverging / "metrics.jsonl")
    q = series(records, "diag/q_max")
    seem = series(records, "diag/seem_normalized")
    first_positive = seem.steps[np.argmax(seem.values > Thresholds().seem_threshold)]
    assert q.values[q.steps == first_positive][0] < v["q_bound"], "SEEM turns positive while Q is still sane"
    # judged at the alarm, before Q explodes: the run is flagged as predicted to diverge
    at_alarm = diagnose([r for r in records if r["step"] <= v["alarm_at"]])
    assert at_alarm.status == "predicted" and at_alarm.exit_code == 1
    # growth under Adam (measured): parameter norm about linear, Q polynomial of higher order
    assert 0.5 < v["param_norm_growth"]["power"]["param"] < 2.0
    assert v["q_growth"]["power"]["param"] > 1.5 * v["param_norm_growth"]["power"]["param"]

    bounded = tmp_path / "td3_ln"
    trainer.run(compose_cfg(*td3_without_bc(data, bounded, ln_steps, hidden, batch, probe, ln_interval or interval,
                                            True)))
    assert rlkit_main(["diagnose", str(bounded), *flags]) == 0
    ln = json.loads((bounded / "diagnose.json").read_text())
    ln_q = series(read_metrics(bounded / "metrics.jsonl"), "diag/q_max")
    assert ln["status"] == "stable" and np.all(ln_q.values < ln["q_bound"])
    return v, ln


def test_seem_warns_before_td3_diverges_and_layernorm_stays_bounded(compose_cfg, tiny_hopper, tmp_path):
    check_demonstration(compose_cfg, tiny_hopper, tmp_path, steps=800, hidden="[64,64]", batch=64, probe=128,
                        interval=25, ln_steps=800)


@pytest.mark.slow
def test_demonstration_paper_sized_critic(compose_cfg, tmp_path_factory, tmp_path):
    """The demonstration at TD3+BC's network and batch sizes (2×256, batch 256) on 10k hopper-random
    transitions; prints the early-warning lead (reported in the SEEM note)."""
    from rlkit.data.collect import collect_to_file

    data = collect_to_file("hopper-random-v2", steps=10_000, seed=0,
                           out=tmp_path_factory.mktemp("seem-data") / "hopper-random-10k.hdf5", num_envs=4)
    v, ln = check_demonstration(compose_cfg, data, tmp_path, steps=1500, hidden="[256,256]", batch=256,
                                probe=512, interval=10, ln_steps=20_000, ln_interval=250, plot=True)
    print(f"\nSEEM alarm at {v['alarm_at']}, divergence at {v['diverged_at']}: lead {v['lead_steps']} steps; "
          f"Q order {v['q_growth']['power']['param']:.2f}, norm order {v['param_norm_growth']['power']['param']:.2f}; "
          f"LayerNorm: {ln['status']}")


def test_cli_reads_the_optimizer_from_the_run_config(tmp_path):
    """An SGD run (``algo.optimizer: sgd`` in config.yaml) gets a crash step; the flag overrides the config."""
    t = STEPS.astype(float)
    run = tmp_path / "sgd"
    write_jsonl(run, records_from(diag__q_max=1e3 * (6000.0 - t) ** -1.0, diag__param_norm=(6000.0 - t) ** -0.5,
                                  diag__q_bound=np.full(len(t), 0.01)))
    (run / "config.yaml").write_text("algo:\n  name: td3bc\n  optimizer: sgd\n")
    assert rlkit_main(["diagnose", str(run), "--no-plot"]) == 1
    verdict = json.loads((run / "diagnose.json").read_text())
    assert verdict["optimizer"] == "sgd" and verdict["crash_step"] == pytest.approx(6000.0, rel=1e-3)
    assert rlkit_main(["diagnose", str(run), "--no-plot", "--optimizer", "adam"]) == 1
    assert json.loads((run / "diagnose.json").read_text())["crash_step"] is None
