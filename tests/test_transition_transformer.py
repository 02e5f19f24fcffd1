"""The transformer transition model (rlkit.nets.latent.TransformerTransition) behind SPR and VCR: the parallel
K-step pass equals stepping one action at a time through every attention kind's rollout state (float64),
predictions are causal in the actions, ``algo.transition`` wiring (VCR at weight 0 equals SPR, refusals),
exact resume and the end-to-end runs the issue names (tiny sizes)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit import trainer
from rlkit.algorithms.world_models.spr import SPR
from rlkit.algorithms.world_models.vcr import VCR
from rlkit.errors import ConfigError
from rlkit.nets import ConvTransition, MLPTransition, TransformerTransition, TransitionModel, make_transition
from rlkit.regimes.online import OnlineRegime
from tests.helpers import at_step, interrupt, metric_records

TINY = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "attn_dropout": 0.0,
        "max_len": 8, "window": 2, "n_agents": 2, "gla_gate_rank": 4}
# (attention, extra keys, norm): every kind, the output gate, and the three norms
KINDS = [("softmax", {}, "post"), ("softmax", {"gate": "headwise"}, "pre"), ("focused_linear", {}, "siamese"),
         ("inline", {}, "post"), ("agent", {"agent_position_bias": True}, "pre"), ("gla", {}, "siamese"),
         ("slide", {}, "siamese"), ("slide", {"gate": "elementwise"}, "post")]


def tiny_model(kind: str, extra: dict, norm: str, conv: bool) -> TransformerTransition:
    torch.manual_seed(0)
    cfg = {**TINY, "attention": kind, "norm": norm, **extra}
    shape, n_act = ((4, 3, 3), 3) if conv else ((6,), 2)
    model = make_transition("transformer", shape, n_act, discrete=conv, horizon=5, hidden=8, transformer=cfg)
    with torch.no_grad():  # move every parameter off its init (zero slide shifts, focus scales, biases)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.double().eval()


def inputs(conv: bool, k: int = 5, b: int = 3):
    g = torch.Generator().manual_seed(1)
    if conv:
        return torch.rand(b, 4, 3, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (b, k), generator=g)
    return torch.rand(b, 6, generator=g, dtype=torch.float64) * 2 - 1, torch.rand(b, k, 2, generator=g,
                                                                                  dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("conv", [True, False], ids=["conv_latent", "vector_latent"])
@pytest.mark.parametrize("kind,extra,norm", KINDS, ids=[f"{k}-{e.get('gate', '')}-{n}" for k, e, n in KINDS])
def test_parallel_pass_equals_stepping_through_the_rollout_state(kind, extra, norm, conv):
    model = tiny_model(kind, extra, norm, conv)
    z0, actions = inputs(conv)
    parallel = model.rollout(z0, actions)
    stepped = TransitionModel.rollout(model, z0, actions)  # begin/advance, one action at a time
    assert parallel.shape == (3, 6, *z0.shape[1:])
    assert torch.equal(parallel[:, 0], z0)
    tol = 1e-6 if kind == "gla" else 1e-10  # gla's decay gate is computed in float32
    torch.testing.assert_close(stepped, parallel, atol=tol, rtol=0)
    # a single step is the first prediction, and the outputs live where the encoder's latents do
    torch.testing.assert_close(model.step(z0, actions[:, 0]), parallel[:, 1], atol=tol, rtol=0)
    if conv:  # renormalised maps: each sample spans [0, 1]
        flat = parallel[:, 1:].flatten(2)
        assert torch.allclose(flat.min(-1).values, torch.zeros(3, 5, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(flat.max(-1).values, torch.ones(3, 5, dtype=torch.float64), atol=1e-4)
    else:  # LayerNorm + tanh
        assert parallel[:, 1:].abs().max() < 1


@pytest.mark.parametrize("kind,extra,norm", KINDS, ids=[f"{k}-{e.get('gate', '')}-{n}" for k, e, n in KINDS])
def test_a_future_action_cannot_change_an_earlier_prediction(kind, extra, norm):
    model = tiny_model(kind, extra, norm, conv=True)
    z0, actions = inputs(True)
    base = model.rollout(z0, actions)
    for j in range(1, 5):
        changed = actions.clone()
        changed[:, j] = (changed[:, j] + 1) % 3
        out = model.rollout(z0, changed)
        assert torch.equal(out[:, : j + 1], base[:, : j + 1]), j  # z_hat_1..z_hat_j depend on a_0..a_{j-1}
        assert not torch.allclose(out[:, j + 1], base[:, j + 1])  # z_hat_{j+1} sees a_j
    other = model.rollout(torch.rand_like(z0), actions)
    assert not torch.allclose(other[:, -1], base[:, -1])  # every prediction sees z_0


def test_make_transition_builds_the_named_model_and_refuses_misfits():
    assert isinstance(make_transition("conv", (64, 7, 7), 3, discrete=True, horizon=5, hidden=64), ConvTransition)
    assert isinstance(make_transition("mlp", (50,), 2, discrete=False, horizon=5, hidden=[32]), MLPTransition)
    with pytest.raises(ConfigError, match="transition=conv needs discrete"):
        make_transition("conv", (50,), 2, discrete=False, horizon=5, hidden=64)
    with pytest.raises(ConfigError, match="transition=mlp needs continuous"):
        make_transition("mlp", (64, 7, 7), 3, discrete=True, horizon=5, hidden=[32])
    with pytest.raises(ConfigError, match="transition='gru'.*conv, mlp, transformer"):
        make_transition("gru", (50,), 2, discrete=False, horizon=5, hidden=[32])
    with pytest.raises(ConfigError, match="max_len=4 .* prediction depth 5"):
        make_transition("transformer", (50,), 2, discrete=False, horizon=5, hidden=[32],
                        transformer={**TINY, "max_len": 4})
    with pytest.raises(ConfigError, match="algo.transformer has an unknown key"):
        make_transition("transformer", (50,), 2, discrete=False, horizon=5, hidden=[32], transformer={"widht": 8})


OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
SMALL = {"batch_size": 4, "prediction_depth": 3, "nstep": 3, "channels": [8, 8, 8], "hidden": 32, "atoms": 11}


def window_batch(k: int = 3, b: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 256, (b, k + 1, 4, 84, 84), generator=g, dtype=torch.uint8)
    return {"obs": obs[:, 0], "window_obs": obs, "window_action": torch.randint(0, 3, (b, k), generator=g),
            "window_valid": torch.ones(b, k + 1), "action": torch.randint(0, 3, (b,), generator=g),
            "reward": torch.randn(b, generator=g), "discount": torch.full((b,), 0.9), "weights": torch.ones(b),
            "next_obs": torch.randint(0, 256, (b, 4, 84, 84), generator=g, dtype=torch.uint8)}


def test_vcr_at_weight_zero_with_the_transformer_transition_equals_spr_with_it():
    tf = {**TINY, "attention": "slide", "norm": "siamese"}
    torch.manual_seed(0)
    spr = SPR(OBS, gym.spaces.Discrete(3), transition="transformer", transformer=tf, **SMALL)
    torch.manual_seed(0)
    vcr = VCR(observation_space=OBS, action_space=gym.spaces.Discrete(3), discrete=SMALL, transition="transformer",
              transformer=tf, vcr_weight=0.0, keep_spr_loss=True)
    assert isinstance(vcr.transition, TransformerTransition)
    for _ in range(3):
        batch = window_batch()
        a, b = spr.update(batch).metrics, vcr.update(batch).metrics
        assert a["train/loss"] == b["train/loss"] and a["train/spr_loss"] == b["train/spr_loss"]
    for (name, p), q in zip(spr.state_dict()["transition"].items(),
                            vcr.state_dict()["transition"].values()):
        assert torch.equal(p, q), name


def test_transformer_transition_gets_gradient_from_both_losses():
    tf = {**TINY, "attention": "gla"}
    torch.manual_seed(0)
    vcr = VCR(observation_space=OBS, action_space=gym.spaces.Discrete(3), discrete=SMALL, transition="transformer",
              transformer=tf, keep_spr_loss=True)
    before = {k: v.clone() for k, v in vcr.transition.state_dict().items()}
    metrics = vcr.update(window_batch()).metrics
    assert metrics["train/vcr_loss"] > 0 and metrics["train/spr_loss"] > 0
    assert not torch.equal(before["core.blocks.0.attn.q_proj.weight"], vcr.transition.core.blocks[0].attn.q_proj.weight)


# --- end to end: the commands at tiny sizes, and exact resume ----------------------------------------

COMMON = ["logging.progress=false", "logging.tensorboard=false", "num_threads=1", "checkpoint.interval=0",
          "train.log_interval=10", "algo.transition=transformer", "algo.transformer.attention=slide",
          "algo.transformer.norm=siamese", "algo.transformer.d_model=16", "algo.transformer.n_heads=2",
          "algo.transformer.d_ff=32", "algo.transformer.n_layers=1", "algo.transformer.window=2",
          "eval.episodes=1", "eval.num_envs=1"]
PONG = ["algo=vcr", "env=atari100k-pong", "train.steps=40", "train.warmup_steps=20", "train.updates_per_step=1.0",
        "train.buffer_capacity=200", "algo.discrete.batch_size=4", "algo.discrete.prediction_depth=2",
        "algo.discrete.channels=[8,8,8]", "algo.discrete.hidden=32", "algo.discrete.atoms=11",
        "+env.kwargs.max_num_frames_per_episode=400", *COMMON]
CHEETAH = ["algo=vcr", "env=dmc-cheetah_run", "env.kwargs.action_repeat=25", "train.steps=30", "train.warmup_steps=15",
           "train.buffer_capacity=200", "algo.continuous.batch_size=4", "algo.continuous.prediction_depth=2",
           "algo.continuous.hidden=[16,16]", "algo.continuous.conv_layers=1", "algo.continuous.feature_dim=8",
           "algo.continuous.policy_actions=2", "eval.interval=0", *COMMON]


@pytest.mark.parametrize("overrides", [PONG, CHEETAH], ids=["atari100k-pong", "dmc-cheetah_run"])
def test_vcr_trains_with_the_transformer_transition(compose_cfg, tmp_path, overrides):
    summary = trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path}"))
    records = metric_records(tmp_path)
    vcr = [r["train/vcr_loss"] for r in records if "train/vcr_loss" in r]
    assert vcr and all(np.isfinite(vcr)) and max(vcr) > 0
    assert summary["steps"] == int([o for o in overrides if o.startswith("train.steps=")][0].split("=")[1])


def test_vcr_with_the_transformer_transition_resumes_exactly(compose_cfg, tmp_path):
    overrides = [*PONG, "train.steps=36", "checkpoint.interval=0"]
    trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'full'}"))
    with at_step(OnlineRegime, 29, interrupt), pytest.raises(KeyboardInterrupt):
        trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'cut'}"))
    trainer.run(compose_cfg(*overrides, f"run_dir={tmp_path / 'cut'}", "resume=true"))
    assert metric_records(tmp_path / "full") == metric_records(tmp_path / "cut")
