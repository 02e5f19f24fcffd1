"""Dataset sources: the resumable downloader (against a loopback HTTP server), the ``load`` dispatcher with
its fallback order, ``info``, and the Minari conversion on hand-made episodes.  No test uses the network."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from rlkit.data import d4rl, hdf5, minari, sources
from rlkit.data.dataset import Dataset
from rlkit.data.download import download_file, part_path
from rlkit.errors import ConfigError, DatasetError


# ------------------------------------------------------------------------------------ loopback server
class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]`` with Range support; ``server.mode`` injects faults."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.mode != "ignore_range":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if srv.mode == "cut_once":  # announce everything, send a third, hang up
            srv.mode = "normal"
            self.wfile.write(chunk[: len(chunk) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.mode = {}, [], "normal"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch, closed_port_url):
    """Every test gets empty caches, and D4RL downloads go to a dead address unless a test says otherwise."""
    monkeypatch.setenv("RLKIT_DATA", str(tmp_path / "rlkit-data"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl-home"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-home"))
    monkeypatch.setenv(d4rl.MIRROR_ENV, closed_port_url)


def payload(n: int = 300_000) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def small_d4rl_file(path: Path, n: int = 9) -> Path:
    """A D4RL-layout file: episode A rows 0-2 (terminal at 2), B rows 3-5 (timeout at 5), C rows 6-8."""
    obs = np.stack([np.arange(n), 10.0 * np.arange(n)], axis=1).astype(np.float32)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[2], timeouts[5] = True, True
    return hdf5.write_raw(path, {
        "observations": obs, "next_observations": obs + 1, "actions": np.zeros((n, 1), np.float32),
        "rewards": np.arange(1, n + 1, dtype=np.float32), "terminals": terminals, "timeouts": timeouts,
        "infos/qpos": np.zeros((n, 3), np.float32), "infos/qvel": np.zeros((n, 3), np.float32),
        "infos/action_log_probs": np.zeros(n, np.float32), "metadata/algorithm": "SAC",
        "metadata/policy/fc0/weight": np.ones((2, 2), np.float32),
    })


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ download
def test_full_download_is_complete_and_atomic(server, tmp_path):
    body = payload()
    server.files["/f.bin"] = body
    dest = download_file(f"{server.url}/f.bin", tmp_path / "out" / "f.bin", progress=False)
    assert dest.read_bytes() == body
    assert not part_path(dest).exists()
    assert server.requests == [("/f.bin", None)]


def test_download_resumes_from_a_partial_file(server, tmp_path):
    body = payload()
    server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(body[:123_456])
    download_file(f"{server.url}/f.bin", dest, expected_size=len(body), progress=False)
    assert dest.read_bytes() == body
    assert server.requests == [("/f.bin", "bytes=123456-")]


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    body = payload()
    server.files["/f.bin"], server.mode = body, "ignore_range"
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"stale bytes from another file")
    download_file(f"{server.url}/f.bin", dest, progress=False)
    assert dest.read_bytes() == body


def test_broken_transfer_keeps_the_part_file_and_the_next_call_resumes(server, tmp_path):
    body = payload()
    server.files["/f.bin"], server.mode = body, "cut_once"
    dest = tmp_path / "f.bin"
    with pytest.raises(DatasetError, match="run the command again to resume"):
        download_file(f"{server.url}/f.bin", dest, progress=False, timeout=5)
    assert not dest.exists()
    kept = part_path(dest).stat().st_size
    assert 0 < kept < len(body)
    download_file(f"{server.url}/f.bin", dest, progress=False)
    assert dest.read_bytes() == body
    assert server.requests[-1] == ("/f.bin", f"bytes={kept}-")


def test_complete_part_file_is_accepted_on_416(server, tmp_path):
    body = payload(1000)
    server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(body)
    download_file(f"{server.url}/f.bin", dest, expected_size=len(body), progress=False)
    assert dest.read_bytes() == body


def test_size_mismatch_is_refused_and_nothing_is_installed(server, tmp_path):
    server.files["/f.bin"] = payload(5000)
    dest = tmp_path / "f.bin"
    with pytest.raises(DatasetError, match="announces 5000 bytes but f.bin is known to have 4999"):
        download_file(f"{server.url}/f.bin", dest, expected_size=4999, progress=False)
    assert not dest.exists()


def test_no_network_names_the_url_and_where_to_put_the_file(closed_port_url, tmp_path):
    dest = tmp_path / "hopper_medium-v2.hdf5"
    url = f"{closed_port_url}/gym_mujoco_v2/hopper_medium-v2.hdf5"
    with pytest.raises(DatasetError) as info:
        download_file(url, dest, progress=False, timeout=5)
    message = str(info.value)
    assert url in message and f"place it at {dest}" in message
    assert not dest.exists()


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(DatasetError, match="HTTP 404"):
        download_file(f"{server.url}/missing.hdf5", tmp_path / "m.hdf5", progress=False)


# ------------------------------------------------------------------------------------------- sources
def test_explicit_path_records_file_provenance(tmp_path):
    path = small_d4rl_file(tmp_path / "mine.hdf5")
    ds = sources.load("my-data", path=path)
    assert ds.provenance["source"] == "file" and ds.provenance["id"] == "my-data"
    assert ds.provenance["path"] == str(path.resolve())
    assert ds.provenance["sha256"] == sha(path) and ds.provenance["size"] == path.stat().st_size
    np.testing.assert_array_equal(ds.episode_ids, [0, 0, 0, 1, 1, 2, 2])


def test_cached_rlkit_file_is_used_without_network(tmp_path):
    dest = sources.d4rl_dir() / "hopper_medium-v2.hdf5"
    dest.parent.mkdir(parents=True)
    small_d4rl_file(dest)
    ds = sources.load("hopper-medium-v2")  # the mirror points at a closed port: no download possible
    prov = ds.provenance
    assert prov["source"] == "d4rl" and prov["id"] == "hopper-medium-v2"
    assert prov["path"] == str(dest.resolve())
    assert prov["url"].endswith("/gym_mujoco_v2/hopper_medium-v2.hdf5")
    assert prov["sha256"] == sha(dest) and prov["raw_rows"] == 9 and prov["transitions"] == 7


def test_existing_d4rl_download_is_reused(tmp_path):
    dest = tmp_path / "d4rl-home" / "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse.hdf5"
    dest.parent.mkdir(parents=True)
    small_d4rl_file(dest)
    ds = sources.load("antmaze-umaze-v0", source="d4rl")
    assert ds.provenance["path"] == str(dest.resolve())
    assert sources.download("antmaze-umaze-v0", progress=False) == dest  # nothing fetched


def test_d4rl_download_then_load(server, tmp_path, monkeypatch):
    src = small_d4rl_file(tmp_path / "served.hdf5")
    server.files["/gym_mujoco_v2/walker2d_expert-v2.hdf5"] = src.read_bytes()
    monkeypatch.setenv(d4rl.MIRROR_ENV, server.url)
    ds = sources.load("walker2d-expert-v2", source="d4rl")
    local = sources.d4rl_dir() / "walker2d_expert-v2.hdf5"
    assert local.read_bytes() == src.read_bytes()
    assert ds.provenance["sha256"] == sha(src)
    assert ds.provenance["url"] == f"{server.url}/gym_mujoco_v2/walker2d_expert-v2.hdf5"
    assert len(server.requests) == 1
    assert sources.download("walker2d-expert-v2", progress=False) == local and len(server.requests) == 1


def test_source_d4rl_never_falls_back(tmp_path):
    called = []
    with pytest.raises(DatasetError, match="cannot download .*place it at"):
        sources.load("hopper-medium-v2", source="d4rl", collect=lambda i: called.append(i))
    assert called == []


def collected_dataset(dataset_id: str) -> Dataset:
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    return Dataset(observations=obs, actions=np.zeros((4, 1)), rewards=np.ones(4), terminals=np.zeros(4),
                   timeouts=np.array([0, 0, 0, 1]), next_observations=obs + 2,
                   provenance={"env": "Hopper-v5"})


@pytest.mark.skipif(minari.is_installed(), reason="checks the path where Minari is absent")
def test_auto_falls_back_to_collection_loudly(capsys):
    ds = sources.load("hopper-medium-v2", collect=collected_dataset)
    err = capsys.readouterr().err
    assert "LOCAL COLLECTION" in err and "NOT the published dataset" in err
    assert "cannot download" in err and "Minari: not installed" in err
    prov = ds.provenance
    assert prov["source"] == "collected" and prov["id"] == "hopper-medium-v2" and prov["path"] is None
    assert prov["env"] == "Hopper-v5" and prov["fallback_from"] == "auto"
    assert any(r.startswith("D4RL: cannot download") for r in prov["fallback_reasons"])


def test_auto_never_pretends_to_collect_antmaze(capsys):
    called = []
    with pytest.raises(DatasetError, match="no AntMaze behaviour policy.*rlkit data download antmaze-umaze-v2"):
        sources.load("antmaze-umaze-v2", collect=lambda i: called.append(i))
    assert called == [] and "LOCAL COLLECTION" not in capsys.readouterr().err


def test_auto_without_collector_lists_every_reason():
    expected = "no source could provide dataset 'hopper-random-v2': D4RL: .*Minari: no counterpart"
    with pytest.raises(DatasetError, match=expected):
        sources.load("hopper-random-v2")


def test_collected_source_and_bad_arguments():
    ds = sources.load("pendulum-custom", source="collected", collect=collected_dataset)
    assert ds.provenance["source"] == "collected" and "fallback_reasons" not in ds.provenance
    with pytest.raises(ConfigError, match="unknown dataset source 'web'"):
        sources.load("hopper-medium-v2", source="web")
    with pytest.raises(ConfigError, match="needs a path"):
        sources.load("x", source="file")
    with pytest.raises(ConfigError, match="needs a collection function"):
        sources.load("x", source="collected")


def test_collected_file_keeps_its_provenance(tmp_path):
    n = 6
    obs = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    path = hdf5.write_d4rl(tmp_path / "collected.hdf5", observations=obs, actions=np.zeros((n, 1)),
                           rewards=np.ones(n), terminals=np.zeros(n), timeouts=np.eye(n, dtype=bool)[2],
                           provenance={"source": "collected", "policy": "random"})
    ds = sources.load("hopper-medium-v2", path=path)
    assert ds.provenance["source"] == "collected" and ds.provenance["policy"] == "random"
    assert ds.size == 4 and ds.num_episodes == 2


@pytest.mark.skipif(minari.is_installed(), reason="checks the error shown when Minari is absent")
def test_minari_source_without_minari_says_how_to_install():
    with pytest.raises(DatasetError, match=r"not installed: pip install 'rlkit\[minari\]'"):
        sources.load("hopper-medium-v2", source="minari")


# ---------------------------------------------------------------------------------------------- info
def test_info_counts_raw_rows_transitions_episodes_and_returns(tmp_path):
    path = small_d4rl_file(tmp_path / "mine.hdf5")
    d = sources.info(str(path))
    assert (d["raw_rows"], d["raw_terminals"], d["raw_timeouts"]) == (9, 1, 1)
    assert (d["transitions"], d["episodes"], d["terminals"], d["timeouts"]) == (7, 3, 1, 2)
    # episode returns 1+2+3, 4+5, 7+8
    assert d["return_mean"] == pytest.approx(10.0) and d["return_min"] == 6 and d["return_max"] == 15
    assert d["return_std"] == pytest.approx(np.std([6, 9, 15]))
    assert d["keys"]["infos/qpos"] == [[9, 3], "float32"]
    assert d["provenance"]["source"] == "file" and d["provenance"]["sha256"] == sha(path)
    text = sources.format_info(d)
    assert "raw rows     9" in text and "transitions  7" in text and "episodes     3" in text
    assert "mean 10.000" in text and "sha256" in text


def test_info_on_a_missing_id_says_how_to_fetch_it():
    with pytest.raises(DatasetError, match="not downloaded .*run `rlkit data download hopper-expert-v2`"):
        sources.info("hopper-expert-v2")
    with pytest.raises(DatasetError, match="neither an existing file nor a known dataset id"):
        sources.info("no-such-thing")


def test_info_on_a_cached_id(tmp_path):
    dest = sources.d4rl_dir() / "halfcheetah_random-v2.hdf5"
    dest.parent.mkdir(parents=True)
    small_d4rl_file(dest)
    d = sources.info("halfcheetah-random-v2")
    assert d["id"] == "halfcheetah-random-v2" and d["provenance"]["source"] == "d4rl" and d["episodes"] == 3


# -------------------------------------------------------------------------------------------- minari
@dataclass
class Episode:  # the fields of minari.dataset.episode_data.EpisodeData used by the conversion
    id: int
    observations: object
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict = field(default_factory=dict)


def box_episode(ep_id: int, steps: int, end: str) -> Episode:
    obs = (100 * ep_id + np.arange(steps + 1, dtype=np.float32))[:, None].repeat(2, axis=1)
    term = np.zeros(steps, bool)
    trunc = np.zeros(steps, bool)
    if end == "terminated":
        term[-1] = True
    elif end == "truncated":
        trunc[-1] = True
    actions = np.full((steps, 1), ep_id, np.float32)
    return Episode(ep_id, obs, actions, np.full(steps, ep_id + 1.0, np.float32), term, trunc)


def test_minari_episodes_keep_every_step_with_its_true_successor():
    eps = [box_episode(0, 3, "terminated"), box_episode(1, 2, "truncated"), box_episode(2, 2, "neither")]
    ds = minari.episodes_to_dataset(eps, {"id": "x"})
    np.testing.assert_array_equal(ds.observations[:, 0], [0, 1, 2, 100, 101, 200, 201])
    np.testing.assert_array_equal(ds.next_observations[:, 0], [1, 2, 3, 101, 102, 201, 202])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(ds.timeouts, [0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(ds.episode_ids, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.returns, [3, 3, 3, 4, 4, 6, 6])
    assert ds.provenance["source"] == "minari" and ds.provenance["id"] == "x"


def test_minari_goal_observations_flatten_to_the_d4rl_antmaze_layout():
    steps = 2
    obs = {"observation": np.arange(3 * 27, dtype=np.float32).reshape(3, 27),
           "achieved_goal": np.array([[1, 2], [3, 4], [5, 6]], np.float32),
           "desired_goal": np.full((3, 2), 9.0, np.float32)}
    ep = Episode(0, obs, np.zeros((steps, 8), np.float32), np.zeros(steps), np.zeros(steps, bool),
                 np.array([False, True]))
    ds = minari.episodes_to_dataset([ep])
    assert ds.observation_dim == 29
    np.testing.assert_array_equal(ds.observations[1, :2], [3, 4])
    np.testing.assert_array_equal(ds.observations[1, 2:], obs["observation"][1])
    np.testing.assert_array_equal(ds.next_observations[1, :2], [5, 6])


def test_minari_episode_without_final_observation_is_refused():
    ep = box_episode(7, 3, "terminated")
    ep.observations = ep.observations[:-1]
    with pytest.raises(DatasetError, match="episode 7 has 3 observations for 3 rewards; expected 4"):
        minari.episodes_to_dataset([ep])


def test_minari_id_map():
    assert minari.minari_id("hopper-medium-v2") == "mujoco/hopper/medium-v0"
    assert minari.minari_id("ant-expert-v2") == "mujoco/ant/expert-v0"
    assert minari.minari_id("antmaze-large-diverse-v2") == "D4RL/antmaze/large-diverse-v1"
    assert minari.minari_id("hopper-medium-replay-v2") is None  # Minari has no replay buffers
    assert minari.minari_id("antmaze-umaze-v0") is None  # v0 timeouts differ from the regenerated data
    assert minari.minari_id("mujoco/walker2d/simple-v0") == "mujoco/walker2d/simple-v0"
    assert set(minari.MINARI_IDS) <= set(d4rl.D4RL_DATASETS)


def test_fingerprint_is_cached_and_follows_file_changes(tmp_path):
    path = small_d4rl_file(tmp_path / "a.hdf5")
    first = sources.fingerprint(path)
    assert first == {"size": path.stat().st_size, "sha256": sha(path)}
    assert str(path.resolve()) in (sources.data_dir() / "sha256-index.json").read_text()
    small_d4rl_file(path, n=12)  # rewritten: new size and mtime
    assert sources.fingerprint(path) == {"size": path.stat().st_size, "sha256": sha(path)} != first


def test_path_with_source_d4rl_records_the_official_address(tmp_path):
    path = small_d4rl_file(tmp_path / "hopper_expert-v2.hdf5")
    ds = sources.load("hopper-expert-v2", source="d4rl", path=path)
    assert ds.provenance["source"] == "d4rl" and ds.provenance["url"].endswith("hopper_expert-v2.hdf5")
    assert ds.provenance["path"] == str(path.resolve())


def test_fallback_cache_is_keyed_by_what_it_is_made_from(tmp_path, monkeypatch):
    """A cached local collection is reused only while the env and the shipped files it was made from are the
    same: a replaced behaviour policy (or another env version) gets a new cache file, the old one is not read."""
    import shutil

    from rlkit.data import collect

    policies = tmp_path / "policies"
    shutil.copytree(collect.POLICY_DIR, policies)
    monkeypatch.setattr(collect, "POLICY_DIR", policies)
    monkeypatch.setenv("RLKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(collect, "DEFAULT_STEPS", 300)
    first = collect.collect_for_fallback("hopper-medium-v2")
    assert collect.collect_for_fallback("hopper-medium-v2").provenance["path"] == first.provenance["path"]  # reused
    key = collect.recipe_key("hopper", "medium")
    assert first.provenance["path"].endswith(f"hopper-medium-300-seed0-{key}.hdf5")
    assert key != collect.recipe_key("hopper", "expert") and key != collect.recipe_key("walker2d", "medium")
    assert collect.recipe_key("hopper", "medium-expert") not in (key, collect.recipe_key("hopper", "expert"))
    with open(policies / "hopper-medium.pt", "ab") as fh:  # a retrained policy: other bytes
        fh.write(b"\0")
    assert collect.recipe_key("hopper", "medium") != key
    assert collect.recipe_key("hopper", "medium-expert") != collect.recipe_key("hopper", "expert")
    with open(policies / "hopper-medium.pt", "rb+") as fh:  # restore the file: collecting works again
        fh.truncate((policies / "hopper-medium.pt").stat().st_size - 1)
    assert collect.recipe_key("hopper", "medium") == key
