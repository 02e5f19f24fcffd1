"""TensorBoard is rlkit's web page: served on a free local port, it shows a run's scalars, its evaluation video
(image tab) and its config (text tab), read back here through TensorBoard's HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np

from rlkit.logger import RunLogger

RUN = "tiny/tb"  # `tensorboard --logdir runs`: one TensorBoard run per run directory's tb/


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str, **query) -> bytes:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_tensorboard_serves_scalars_video_and_config(tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("algo:\n  name: tiny\n")
    logger = RunLogger(run_dir, tensorboard=True)
    for step in (10, 20):
        logger.log(step, {"eval/return_mean": step / 10, "wm/loss": 1.0 / step})
    frames = np.zeros((6, 24, 24, 3), np.uint8)
    frames[np.arange(6), 4 + 2 * np.arange(6), 8] = 255  # a falling dot
    logger.log_video(20, "eval/video", list(frames), fps=5.0, path=run_dir / "unused.mp4")
    logger.close()

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "runs"),
                               "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, tags = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            try:
                tags = json.loads(_get(base, "/data/plugin/scalars/tags"))
                if tags.get(RUN):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert set(tags[RUN]) == {"eval/return_mean", "wm/loss"}
        scalars = json.loads(_get(base, "/data/plugin/scalars/scalars", run=RUN, tag="eval/return_mean"))
        assert [(s[1], s[2]) for s in scalars] == [(10, 1.0), (20, 2.0)]
        assert "eval/video" in json.loads(_get(base, "/data/plugin/images/tags"))[RUN]
        (image,) = json.loads(_get(base, "/data/plugin/images/images", run=RUN, tag="eval/video"))
        assert image["step"] == 20
        gif = _get(base, "/data/plugin/images/individualImage", **dict(urllib.parse.parse_qsl(image["query"])))
        assert gif[:6] == b"GIF89a"
        import imageio.v3 as iio

        assert iio.imread(gif, index=None).shape[0] == 6  # every frame of the episode
        assert json.loads(_get(base, "/data/plugin/text/tags"))[RUN] == ["config/text_summary"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
