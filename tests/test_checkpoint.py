"""Atomic checkpoints and clear errors for corrupt or mismatched ones."""

import os

import pytest
import torch

from rlkit.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from rlkit.errors import CheckpointError
from rlkit.utils import atomic_write_bytes


def test_save_load_roundtrip_and_rotation(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path / f"step_{step:010d}.pt", {"step": step, "w": torch.arange(3)}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_0000000020.pt", "step_0000000030.pt"]
    payload = load_checkpoint(latest_checkpoint(tmp_path))
    assert payload["step"] == 30 and payload["w"].tolist() == [0, 1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_checkpoint_is_refused_clearly(tmp_path):
    path = save_checkpoint(tmp_path / "step_0000000001.pt", {"step": 1, "w": torch.zeros(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "step_0000000001.pt"
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="not an rlkit checkpoint"):
        load_checkpoint(path)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
