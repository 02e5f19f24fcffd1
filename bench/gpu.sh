#!/usr/bin/env bash
# Every benchmark on CUDA in one go (< 8 minutes on one H100), results in one JSON file.
#
#   bash bench/gpu.sh [OUT.json]          # default: $OUT/gpu_bench.json if $OUT is set, else bench/gpu_bench.json
#   bash bench/gpu.sh --prepare           # (on a machine with pip) put gymnasium, the one pure-Python package the
#                                         # benchmarks import that a bare torch image lacks, under bench/.gpu-deps
#
# Needs only torch + numpy (+ bench/.gpu-deps: carry it to the GPU machine); rlkit runs from this checkout
# without installation (a symlinked package tree in a temp folder maps algorithms/ envs/ kernels/ configs/ to
# rlkit.*, as setup.py does).  Workloads that need what the image lacks (d3rlpy, cpprb, MuJoCo/ALE/dm_control
# environments, the STORM authors' code unless STORM_REF points at it) are skipped with the reason printed and
# recorded.  Each benchmark runs under its own time limit (together 415 s, 475 s with STORM_REF); a timeout is
# recorded, never fatal.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$REPO/bench/.gpu-deps"
if [[ "${1:-}" == "--prepare" ]]; then
  python -m pip install --quiet --no-deps --target "$DEPS" gymnasium farama-notifications cloudpickle tqdm \
    && echo "installed into $DEPS; carry bench/.gpu-deps to the GPU machine"
  exit $?
fi
if [[ -n "${1:-}" ]]; then RESULT="$1"; elif [[ -n "${OUT:-}" ]]; then RESULT="$OUT/gpu_bench.json"; else RESULT="$REPO/bench/gpu_bench.json"; fi
LOGS="$(mktemp -d)"
PKG="$LOGS/pkg/rlkit"   # rlkit package tree without installing: rlkit/* plus the mapped folders
mkdir -p "$PKG"
for entry in "$REPO"/rlkit/*; do ln -s "$entry" "$PKG/$(basename "$entry")"; done
for folder in algorithms envs kernels configs; do ln -s "$REPO/$folder" "$PKG/$folder"; done
export PYTHONPATH="$LOGS/pkg:$DEPS:${PYTHONPATH:-}"
cd "$REPO"
python - <<'PY' || { echo "no CUDA device or torch here; nothing to run"; exit 1; }
import torch
assert torch.cuda.is_available()
print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
have() { python -c "import $1" >/dev/null 2>&1; }

# name | limit (s) | command   (figures written by the scripts' --json options land in $LOGS)
run() {
  local name="$1" limit="$2"; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.out" 2>&1
  local rc=$?
  tail -n 25 "$LOGS/$name.out"
  echo "$name rc=$rc seconds=$((SECONDS - start))" >>"$LOGS/status"
}
skip() { echo "=== $1 skipped: $2"; echo "$1 skipped $2" >>"$LOGS/skipped"; }

if have gymnasium; then
  run offline_update 80 python bench/offline_update.py --device cuda --updates 1000 --block 100 --cuda-graph
  run offline_compile 100 python bench/offline_update.py --device cuda --updates 600 --block 100 --compile
  run peers 90 python bench/peers.py --device cuda --rounds 2 --seconds 1.5 --rows 200000 \
    --workloads td3bc iql cql uniform --json "$LOGS/peers.json"
  run storm 70 python bench/storm.py --device cuda --batches reduced paper --repeats 3
  run seem 30 python bench/seem.py --device cuda
else
  skip offline "gymnasium missing (run 'bash bench/gpu.sh --prepare' where pip works and carry bench/.gpu-deps)"
fi
if [[ -n "${STORM_REF:-}" && -d "${STORM_REF}/sub_models" ]] && have einops && have gymnasium; then
  run storm_reference 60 python bench/storm_reference.py --ref "$STORM_REF" --device cuda --rounds 3 --repeats 3 \
    --json "$LOGS/storm_reference.json"
else
  skip storm_reference "needs STORM_REF=<the STORM authors' code> and einops"
fi
run attention 45 python bench/attention.py --device cuda --quick
skip replay "host-side (numpy) benchmark: run bench/replay.py and bench/peers.py --workloads per uniform on the CPU"
skip oper "host-side sampling overhead: run bench/oper.py on the CPU"
skip env_throughput "needs MuJoCo / ALE / dm_control, absent from the GPU image"
skip urlb "needs dm_control, absent from the GPU image"

python - "$LOGS" "$RESULT" <<'PY'
import json, pathlib, sys, time
import torch
logs, result = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gpu": torch.cuda.get_device_name(0),
       "torch": torch.__version__, "benchmarks": {}, "skipped": {}}
for line in (logs / "status").read_text().splitlines() if (logs / "status").exists() else []:
    name, rc, secs = line.split()
    entry = {"rc": int(rc.split("=")[1]), "seconds": int(secs.split("=")[1]),
             "timed_out": rc.split("=")[1] in ("124", "137"),
             "output": (logs / f"{name}.out").read_text()[-6000:]}
    if (logs / f"{name}.json").exists():
        entry["json"] = json.loads((logs / f"{name}.json").read_text())
    out["benchmarks"][name] = entry
for line in (logs / "skipped").read_text().splitlines() if (logs / "skipped").exists() else []:
    name, _, reason = line.partition(" skipped ")
    out["skipped"][name] = reason
result.parent.mkdir(parents=True, exist_ok=True)
result.write_text(json.dumps(out, indent=1))
print("wrote", result, "-", sum(v["rc"] == 0 for v in out["benchmarks"].values()), "of", len(out["benchmarks"]),
      "benchmarks finished")
PY
