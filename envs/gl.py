"""The OpenGL backend of MuJoCo's offscreen rendering (dm_control pixels, videos).

On Linux without a display, ``MUJOCO_GL`` defaults to ``egl`` when libEGL is present; an explicit
``MUJOCO_GL`` (``egl``, ``osmesa``, ``glfw``) always wins. It must be chosen before MuJoCo's GL bindings
are imported, so the modules that render call :func:`choose_backend` at import.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import sys

HELP = ("install an OpenGL backend -- EGL (Debian/Ubuntu: apt install libegl1 libgl1-mesa-dri, then MUJOCO_GL=egl) "
        "or OSMesa (apt install libosmesa6, then MUJOCO_GL=osmesa)")


def choose_backend() -> str | None:
    """Set ``MUJOCO_GL=egl`` on a headless Linux with libEGL unless it is set; returns the backend in use."""
    if (sys.platform.startswith("linux") and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY")
            and ctypes.util.find_library("EGL")):
        os.environ["MUJOCO_GL"] = "egl"
    if os.environ.get("MUJOCO_GL") == "egl":
        # Mesa's EGL drags in its own LLVM; if Triton (used by torch.compile and rlkit's kernels) is loaded after
        # it, the two LLVM copies clash and the process segfaults. Loading Triton first is safe.
        with contextlib.suppress(ImportError):
            import triton  # noqa: F401
    return os.environ.get("MUJOCO_GL")
