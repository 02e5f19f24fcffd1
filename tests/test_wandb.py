"""W&B logging (logging.wandb=true) in offline mode: every metrics.jsonl record, the config, the videos and the
summary are in the run's W&B files, read back here; a resumed run keeps its W&B run id."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from rlkit import trainer
from rlkit.errors import ConfigError

wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[wandb]')")

TINY = ["algo=storm", "algo.encoder_channels=[16,32]", "algo.latent_vars=8", "algo.latent_classes=8",
        "algo.transformer.d_model=64", "algo.transformer.n_heads=4", "algo.transformer.d_ff=128",
        "algo.transformer.max_len=32", "algo.head_hidden=64", "algo.agent_hidden=64", "algo.act_context=4",
        "algo.wm_seq_len=8", "algo.imagine_context=2", "algo.imagine_horizon=2", "algo.wm_batch_size=4",
        "algo.imagine_batch_size=4", "device=cpu", "env=tiny-catch", "train.buffer_capacity=500",
        "train.warmup_steps=30", "train.log_interval=10", "eval.interval=10", "eval.episodes=2",
        "eval.num_envs=1", "checkpoint.interval=0", "logging.wandb=true", "logging.wandb_project=rlkit-test",
        "logging.wandb_group=g1", "logging.wandb_tags=[tiny,ci]"]


def wandb_records(path: Path):
    """The records of a W&B ``run-<id>.wandb`` file: a 7-byte header, then LevelDB-log blocks of 32 KiB whose
    chunks carry (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and a ``Record`` protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunks, block = path.read_bytes(), 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: Path, timeout: float = 60.0) -> dict:
    """The run, config, history rows and summary of the offline run in ``run_dir`` (waits, bounded, for W&B's
    service process to write the run's last record: it flushes the file after ``finish()`` returns)."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout
    records = list(wandb_records(path))
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.5)
        records = list(wandb_records(path))
    out = {"history": [], "summary": {}, "dir": path.parent}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"] = {u.key: json.loads(u.value_json) for u in record.run.config.update}
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({_key(u): json.loads(u.value_json) for u in record.summary.update if _key(u)})
    return out


def test_offline_run_holds_metrics_config_videos_summary(compose_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    trainer.run(compose_cfg(*TINY, "train.steps=40", "eval.video_interval=20", "eval.video_size=32",
                            f"run_dir={run_dir}"))
    assert "wandb sync" in capsys.readouterr().err
    run = read_offline_run(run_dir)
    assert run["run"].run_id == (run_dir / "wandb_run_id").read_text().strip()
    assert run["run"].project == "rlkit-test" and run["run"].run_group == "g1"
    assert list(run["run"].tags) == ["tiny", "ci"]
    assert run["config"]["algo"]["name"] == "storm" and run["config"]["train"]["steps"] == 40
    # every metrics.jsonl record, at its step, with its values
    history: dict[int, dict] = {}
    for row in run["history"]:
        history.setdefault(int(row["_step"]), {}).update(row)
    for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()):
        logged = history[record["step"]]
        for key, value in record.items():
            if key not in ("step", "time", "phase"):
                assert logged[key] == pytest.approx(value), key
    videos = {step: row["eval/video/path"] for step, row in history.items() if "eval/video/path" in row}
    assert sorted(videos) == [20, 40]
    assert all((run["dir"] / "files" / path).exists() for path in videos.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run["summary"]["final_return"] == summary["final_return"] and run["summary"]["steps"] == 40
    assert json.loads((run["dir"] / "files" / "summary.json").read_text()) == summary


def test_resume_continues_the_same_run_id(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    trainer.run(compose_cfg(*TINY, "train.steps=30", f"run_dir={tmp_path}"))
    trainer.run(compose_cfg(*TINY, "train.steps=40", f"run_dir={tmp_path}", "resume=true"))
    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    # wandb names each offline run's folder offline-run-<time>-<id> (with -1, -2... when two start in the same
    # second); the run's own record inside, run-<id>.wandb, is what names the run it appends to.
    records = sorted(p.name for p in tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert records == [f"run-{run_id}.wandb"] * 2


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    from rlkit.wandb_sink import WandbSink

    monkeypatch.setitem(sys.modules, "wandb", None)  # what `import wandb` meets where it is not installed
    needs = r'^logging.wandb=true needs the wandb package: pip install -e "\.\[wandb\]"$'
    with pytest.raises(ConfigError, match=needs):
        WandbSink(tmp_path, project="p")
