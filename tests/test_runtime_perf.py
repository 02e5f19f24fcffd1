"""Speed-path switches: CUDA-graph capture of the TD3+BC update (CUDA only) and the runtime thread policy.

The CUDA-graph test checks that replaying the recorded update gives the same parameters as the eager
update on the same batches (target-policy noise off, so both paths compute the same function).
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.algorithms.offline.td3bc import TD3BC
from rlkit.errors import ConfigError
from rlkit.replay.batch import Batch
from rlkit.runtime import configure_runtime, default_threads

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_cuda_graph_refused_off_cuda():
    with pytest.raises(ConfigError, match="cuda_graph"):
        TD3BC(OBS, ACT, "cpu", cuda_graph=True)


def test_configure_runtime_sets_threads_and_restores():
    before = torch.get_num_threads()
    try:
        assert configure_runtime(1, flush_denormal=False) == {"num_threads": 1, "flush_denormal": False}
        assert torch.get_num_threads() == 1
        assert 1 <= configure_runtime(None, flush_denormal=False)["num_threads"] <= 2
        assert default_threads(load=0.0) == min(2, len(os.sched_getaffinity(0)))
        assert default_threads(load=64.0) == 1  # oversubscribed cores: one thread
        with pytest.raises(ConfigError):
            configure_runtime(0)
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)


def test_flush_denormal_zeroes_subnormals():
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    try:
        if not configure_runtime(torch.get_num_threads(), flush_denormal=True)["flush_denormal"]:
            pytest.skip("this CPU has no flush-to-zero mode")
        assert float(tiny * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(False)
    assert float(torch.tensor([1e-40], dtype=torch.float32) * 1.0) > 0.0


def _batches(n: int, device: str) -> list[Batch]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        b = Batch(obs=torch.randn(64, 5, generator=g), action=torch.rand(64, 2, generator=g) * 2 - 1,
                  reward=torch.randn(64, generator=g), next_obs=torch.randn(64, 5, generator=g),
                  terminated=(torch.rand(64, generator=g) < 0.1).float(), weights=torch.ones(64))
        out.append(Batch({k: v.to(device) for k, v in b.items()}))
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_update_matches_eager():
    torch.manual_seed(0)
    eager = TD3BC(OBS, ACT, "cuda", hidden=(32, 32), policy_noise=0.0)
    torch.manual_seed(0)
    graphed = TD3BC(OBS, ACT, "cuda", hidden=(32, 32), policy_noise=0.0, cuda_graph=True)
    for a, b in zip(eager.critic.parameters(), graphed.critic.parameters()):  # same seed, same networks
        torch.testing.assert_close(a, b)
    kept = []
    for batch in _batches(20, "cuda"):  # 3 eager warm-ups per phase, then replays of both phases
        m_eager, m_graph = eager.update(batch).metrics, graphed.update(batch).metrics
        kept.append(m_graph["train/critic_loss"])
        torch.testing.assert_close(m_graph["train/critic_loss"], m_eager["train/critic_loss"], rtol=1e-4, atol=1e-5)
        assert set(m_graph) == set(m_eager)
    assert len(graphed._graphed._graphs) == 2  # critic-only and critic + actor + targets
    assert len({float(x) for x in kept}) == len(kept)  # returned metrics are copies, not the graph's buffers
    for name in ("actor", "critic", "actor_target", "critic_target"):
        for p_e, p_g in zip(getattr(eager, name).parameters(), getattr(graphed, name).parameters()):
            torch.testing.assert_close(p_g, p_e, rtol=1e-4, atol=1e-5)
    assert graphed.num_updates == eager.num_updates == 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_resumes_from_eager_checkpoint():
    """An eager run's state (non-capturable Adam) loads into a cuda_graph run, which keeps training."""
    eager = TD3BC(OBS, ACT, "cuda", hidden=(32, 32))
    batches = _batches(12, "cuda")
    for batch in batches[:4]:
        eager.update(batch)
    graphed = TD3BC(OBS, ACT, "cuda", hidden=(32, 32), cuda_graph=True)
    graphed.load_state_dict(eager.state_dict())
    before = [p.detach().clone() for p in graphed.critic.parameters()]
    for batch in batches[4:]:
        metrics = graphed.update(batch).metrics
    assert torch.isfinite(metrics["train/critic_loss"])
    assert all(not torch.equal(a, b) for a, b in zip(before, graphed.critic.parameters()))
    assert graphed.num_updates == 12


def test_cql_samples_n_actions_from_one_actor_forward():
    """``CQL._sample`` (one actor pass, n draws) equals running the actor on n copies of each state."""
    from rlkit.algorithms.offline.cql import CQL

    algo = CQL(OBS, ACT, "cpu", actor_hidden=(32, 32), critic_hidden=(32, 32))
    obs = torch.randn(7, 5)
    torch.manual_seed(3)
    reference = algo.actor(obs.expand(4, *obs.shape)).rsample_with_log_prob()
    torch.manual_seed(3)
    actions, log_probs = algo._sample(obs, 4)
    assert actions.shape == (4, 7, 2) and log_probs.shape == (4, 7)
    torch.testing.assert_close(actions, reference[0])
    torch.testing.assert_close(log_probs, reference[1])


def test_graph_inputs_cover_the_policy_batch():
    """The tensors a graph copies in include a decoupled policy batch, and the rebuilt batch keeps it."""
    from rlkit.cuda_graph import _rebuild, _structure, _tensors

    main, policy = _batches(2, "cpu")
    main.policy_batch = policy
    leaves = _tensors(main)
    assert len(leaves) == len(main) + len(policy)
    copy = _rebuild(main, iter([t.clone() for t in leaves]))
    assert isinstance(copy, Batch) and copy.policy_batch is not None
    torch.testing.assert_close(copy.policy_batch.obs, policy.obs)
    assert copy.policy_batch.obs.data_ptr() != policy.obs.data_ptr()
    assert _structure(main) != _structure(_batches(1, "cpu")[0])  # with vs without a policy batch


@pytest.mark.parametrize("layernorm", [False, True])
@pytest.mark.parametrize("stacked_input", [False, True])
def test_ensemble_per_member_path_matches_batched(monkeypatch, layernorm, stacked_input):
    """``EnsembleMLP.forward_per_member`` (one ``addmm`` chain per member and row chunk, taken for large
    batches on the CPU) computes the same values and gradients as the batched ``baddbmm`` path, in float64."""
    import rlkit.nets.mlp as mlp
    from rlkit.nets.mlp import PER_MEMBER_ELEMENTS, EnsembleMLP

    monkeypatch.setattr(mlp, "PER_MEMBER_CHUNK_ELEMENTS", 16 * 7)  # 7-row chunks: 40 rows -> 6 chunks
    torch.manual_seed(0)
    net = EnsembleMLP(6, (16, 12), 2, 3, layernorm=layernorm).double()
    x = torch.randn(*((3,) if stacked_input else ()), 40, 6, dtype=torch.float64, requires_grad=True)
    batched = torch.nn.Sequential.forward(net, x)
    per_member = net.forward_per_member(x)
    torch.testing.assert_close(per_member, batched)
    inputs = [x, *net.parameters()]
    for a, b in zip(torch.autograd.grad(batched.pow(2).sum(), inputs),
                    torch.autograd.grad(per_member.pow(2).sum(), inputs)):
        torch.testing.assert_close(a, b)
    # the switch: only a batch past the threshold (E * rows * widest layer) takes the per-member path
    calls = []
    net.forward_per_member = lambda inp: calls.append(inp.shape[-2]) or EnsembleMLP.forward_per_member(net, inp)
    big = torch.randn(PER_MEMBER_ELEMENTS // (3 * 16) + 1, 6, dtype=torch.float64)
    torch.testing.assert_close(net(big), torch.nn.Sequential.forward(net, big))
    net(x)
    assert calls == [big.shape[0]]
