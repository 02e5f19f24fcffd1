"""Attention kernels at the STORM width (8 heads x 64 = 512): training cost per kind, and rollout cost.

Run by hand (never in CI):  python bench/attention.py [--quick] [--device cuda] [--dtype bfloat16]

Prints, in one run, ratios against baselines measured in the same run:
1. forward+backward time of every kind for T in 16..1024 at a fixed token count per batch
   (B = tokens // T), as a ratio to causal softmax attention (SDPA) on the same device;
2. the transformer rollout (STORM stack: 2 layers, 512 wide, FFN 1024) of H = 16 imagined steps after a
   context of L tokens: re-running the whole context at every step vs prefill + cached steps;
3. on CUDA only: our Triton kernels against torch SDPA (fused softmax forward+backward, one-token decode)
   and against the PyTorch reference (linear kinds, slide);
4. rollout at the attention layer: time of one new token after T tokens through each kind's state
   (KV cache, recurrent state, slide's ring buffer) and the bytes that state holds, T = 64, 256, 1024,
   as ratios to softmax.
slide rows use window 16: "slide" is the plain windowed kernel (a fresh layer, or merged shifts equal to
the identity), "slide+deform" adds the learned deformed shift (the training-time layer).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rlkit import kernels  # noqa: E402
from rlkit.nets.transformer import CausalTransformer, TransformerConfig  # noqa: E402

HEADS, HEAD_DIM = 8, 64
ROWS = ["softmax", "softmax+gate", "focused_linear", "inline", "agent", "gla", "slide", "slide+deform"]
WINDOW = 16


def _clock(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def timeit_many(fns: dict, device: torch.device, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Best wall time (ms) of each function, measured round-robin so that load from other processes on a
    shared machine hits every contender alike; the minimum is the least disturbed run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], _clock(fn, device))
    return best


def timeit(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    return timeit_many({"fn": fn}, device, repeats, warmup)["fn"]


def make_inputs(row: str, B: int, T: int, device, dtype, requires_grad: bool = True):
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, std=1.0):
        return (torch.randn(*shape, generator=gen) * std).to(device=device, dtype=dtype)

    q, k, v = rnd(B, T, HEADS, HEAD_DIM), rnd(B, T, HEADS, HEAD_DIM), rnd(B, T, HEADS, HEAD_DIM)
    leaves = [q, k, v]
    kw: dict = {"kind": row.split("+")[0]}
    if row == "softmax+gate":
        kw["gate"] = rnd(B, T, HEADS)
    if row in ("focused_linear", "inline", "agent"):
        kw["conv_weight"] = rnd(HEADS, HEAD_DIM, 3, std=0.3)
    if row == "agent":
        kw["agents"] = rnd(HEADS, 16, HEAD_DIM, std=HEAD_DIM**-0.5)
    if row == "gla":
        kw["log_decay"] = F.logsigmoid(rnd(B, T, HEADS, HEAD_DIM).float()) / 16
    if row.startswith("slide"):
        kw.update(window=WINDOW, slide_bias=rnd(HEADS, WINDOW, std=0.1))
        if row == "slide+deform":
            kw["deform_weight"] = rnd(HEAD_DIM, WINDOW, WINDOW, std=0.05)
    if requires_grad:
        for t in leaves + [t for t in kw.values() if torch.is_tensor(t)]:
            t.requires_grad_()
    return leaves, kw


def fwd_bwd(row: str, B: int, T: int, device, dtype, impl: str | None):
    """A closure running forward + backward of one attention row."""
    (q, k, v), kw = make_inputs(row, B, T, device, dtype)
    do = torch.randn(B, T, HEADS, HEAD_DIM, device=device, dtype=dtype)

    def run():
        o, _ = kernels.attention(q, k, v, impl=impl, **kw)
        o.backward(do)

    return run


def sdpa_fwd_bwd(B: int, T: int, device, dtype):
    shape = (B, HEADS, T, HEAD_DIM)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    do = torch.randn_like(q)

    def run():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(do)

    return run


def table(title: str, lengths: list[int], rows: dict[str, list[str]]) -> None:
    print(f"\n{title}")
    print(f"{'':>22}" + "".join(f"{'T=' + str(T):>10}" for T in lengths))
    for name, cells in rows.items():
        print(f"{name:>22}" + "".join(f"{c:>10}" for c in cells))


def bench_kinds(lengths, tokens, device, dtype, repeats, impl):
    times = {row: [] for row in ROWS}
    for T in lengths:
        B = max(1, tokens // T)
        best = timeit_many({row: fwd_bwd(row, B, T, device, dtype, impl) for row in ROWS}, device, repeats)
        for row in ROWS:
            times[row].append(best[row])
    base = times["softmax"]
    table(
        f"[1] forward+backward, best of {repeats}, ms (B = {tokens} // T, H = {HEADS}, d = {HEAD_DIM}, "
        f"{dtype}, impl = {impl or 'device default'})",
        lengths,
        {row: [f"{t:.2f}" for t in ts] for row, ts in times.items()},
    )
    table(
        "    ratio to softmax (> 1: slower than softmax)",
        lengths,
        {row: [f"{t / b:.2f}x" for t, b in zip(ts, base)] for row, ts in times.items() if row != "softmax"},
    )


def bench_rollout(device, dtype, batch, contexts, horizon, repeats):
    print(
        f"\n[2] rollout of H = {horizon} steps, STORM stack (2 x 512, 8 heads, FFN 1024), batch {batch}, eval"
    )
    print(f"{'':>16}{'L':>4}{'recompute ms':>14}{'cached ms':>12}{'ratio':>9}")
    for kind in kernels.KINDS:
        cfg = TransformerConfig(attention=kind, max_len=64, n_agents=16)
        model = CausalTransformer(cfg).to(device=device, dtype=dtype).eval()
        for L in contexts:
            seq = torch.randn(batch, L + horizon, cfg.d_model, device=device, dtype=dtype)

            @torch.no_grad()
            def recompute(seq=seq, L=L, model=model):
                for i in range(horizon):  # re-run the whole context at every imagined step
                    model(seq[:, : L + i + 1])[:, -1]

            @torch.no_grad()
            def cached(seq=seq, L=L, model=model):
                _, state = model.prefill(seq[:, :L])
                for i in range(horizon):
                    _, state = model.step(seq[:, L + i], state)

            best = timeit_many({"recompute": recompute, "cached": cached}, device, repeats)
            t_re, t_ca = best["recompute"], best["cached"]
            print(f"{kind:>16}{L:>4}{t_re:>14.1f}{t_ca:>12.1f}{t_re / t_ca:>8.2f}x")


def bench_triton_vs_sdpa(lengths, tokens, device, dtype, repeats):
    rows: dict[str, list[str]] = {"triton / SDPA fwd+bwd": [], "triton decode / SDPA": []}
    lin_kinds = ("focused_linear", "inline", "gla", "slide", "slide+deform")
    lin_rows = {f"{k} triton/ref": [] for k in lin_kinds}
    for T in lengths:
        B = max(1, tokens // T)
        best = timeit_many(
            {
                "triton": fwd_bwd("softmax", B, T, device, dtype, "triton"),
                "sdpa": sdpa_fwd_bwd(B, T, device, dtype),
            },
            device,
            repeats,
        )
        rows["triton / SDPA fwd+bwd"].append(f"{best['triton'] / best['sdpa']:.2f}x")
        cache = kernels.empty_state(
            "softmax", B, HEADS, HEAD_DIM, HEAD_DIM, capacity=T + 1, device=device, dtype=dtype
        )
        kv = torch.randn(B, T, HEADS, HEAD_DIM, device=device, dtype=dtype)
        cache = cache.append(kv, kv)
        q1 = torch.randn(B, 1, HEADS, HEAD_DIM, device=device, dtype=dtype)

        @torch.no_grad()
        def decode_triton(cache=cache, q1=q1):
            from rlkit.kernels.triton_softmax import decode_attention

            decode_attention(q1, cache.keys(), cache.values())

        @torch.no_grad()
        def decode_sdpa(cache=cache, q1=q1):
            F.scaled_dot_product_attention(
                q1.transpose(1, 2), cache.keys().transpose(1, 2), cache.values().transpose(1, 2)
            )

        best = timeit_many({"triton": decode_triton, "sdpa": decode_sdpa}, device, repeats)
        rows["triton decode / SDPA"].append(f"{best['triton'] / best['sdpa']:.2f}x")
        for kind in lin_kinds:
            fns = {impl: fwd_bwd(kind, B, T, device, dtype, impl) for impl in ("triton", "reference")}
            best = timeit_many(fns, device, repeats)
            lin_rows[f"{kind} triton/ref"].append(f"{best['triton'] / best['reference']:.2f}x")
    table(
        f"[3] CUDA: Triton kernels vs baselines (< 1: Triton faster; {dtype})", lengths, {**rows, **lin_rows}
    )


def state_bytes(state) -> int:
    return sum(t.numel() * t.element_size() for t in vars(state).values() if torch.is_tensor(t))


def bench_layer_rollout(lengths, batch, device, dtype, repeats, impl):
    """One token after T tokens, through the state of each kind (attention layer only, no projections)."""
    times: dict[str, list[float]] = {row: [] for row in ROWS}
    sizes: dict[str, list[int]] = {row: [] for row in ROWS}
    for T in lengths:
        fns = {}
        for row in ROWS:
            (q, k, v), kw = make_inputs(row, batch, T + 1, device, dtype, requires_grad=False)
            tok = {n: kw[n][:, T:] for n in ("gate", "log_decay") if n in kw}  # the per-token arguments
            # the state holds raw keys and values only: prefill slide+deform without the O(T w^2 d) windows
            head = {n: (t[:, :T] if n in tok else t) for n, t in kw.items() if n != "deform_weight"}
            with torch.no_grad():
                _, st = kernels.attention(q[:, :T], k[:, :T], v[:, :T], return_state=True, capacity=T + 1,
                                          impl=impl, **head)
            sizes[row].append(state_bytes(st))
            step_kw = {**kw, **tok}

            @torch.no_grad()
            def step(q=q, k=k, v=v, st=st, T=T, step_kw=step_kw):
                kernels.attention(q[:, T:], k[:, T:], v[:, T:], state=st, impl=impl, **step_kw)

            fns[row] = step
        best = timeit_many(fns, device, repeats * 4)
        for row in ROWS:
            times[row].append(best[row])
    table(f"[4] rollout: one token after T tokens, attention layer only, batch {batch}, ms", lengths,
          {row: [f"{t:.3f}" for t in ts] for row, ts in times.items()})
    table("    ratio to softmax", lengths,
          {row: [f"{t / b:.2f}x" for t, b in zip(ts, times["softmax"])] for row, ts in times.items()})
    table("    state bytes per layer", lengths, {row: [f"{b / 1024:.0f}K" for b in bs] for row, bs in sizes.items()})
    table("    state bytes, ratio to softmax", lengths,
          {row: [f"{b / s:.3f}x" for b, s in zip(bs, sizes["softmax"])] for row, bs in sizes.items()})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--tokens", type=int, default=None, help="B*T per batch (default 16384 CUDA, 1024 CPU)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--rollout-batch", type=int, default=None, help="default 1024 (STORM) on CUDA, 32 on CPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="T up to 256 only")
    p.add_argument("--sections", default="1,2,3,4", help="which parts to run, e.g. '2' for the rollout only")
    p.add_argument("--lengths", default=None, help="comma-separated T for sections 1, 3, 4 (default 16..1024)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if cuda else torch.float32)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = args.tokens or (16384 if cuda else 1024)
    repeats = args.repeats or (20 if cuda else 5)
    lengths = [16, 32, 64, 128, 256] + ([] if args.quick else [512, 1024])
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    where = torch.cuda.get_device_name(device) if cuda else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), torch {torch.__version__}")
    sections = {int(x) for x in args.sections.split(",")}
    if 1 in sections:
        bench_kinds(lengths, tokens, device, dtype, repeats, impl=None)
    if 2 in sections:
        bench_rollout(device, dtype, args.rollout_batch or (1024 if cuda else 32), [8, 48], 16, repeats)
    if 3 in sections and cuda:
        bench_triton_vs_sdpa(lengths, tokens, device, dtype, repeats)
    elif 3 in sections:
        print("\n[3] skipped: Triton vs SDPA needs a CUDA device")
    if 4 in sections:
        bench_layer_rollout(lengths, args.rollout_batch or (1024 if cuda else 32), device, dtype, repeats, None)


if __name__ == "__main__":
    main()
