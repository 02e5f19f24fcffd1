"""Resumable HTTP(S) download with size checks and an atomic result (standard library only).

``download_file(url, dest)`` streams into ``dest + '.part'`` next to the destination.  If a ``.part`` file
is already there it asks the server for the rest (``Range: bytes=<have>-``); a server that ignores the
range (``200``) restarts the file.  The finished ``.part`` must match the size the server announced
(``Content-Length`` / ``Content-Range``) and ``expected_size`` when one is known; only then is it renamed
to ``dest`` with ``os.replace``, so ``dest`` is either absent or complete.  Network failures become one
:class:`DatasetError` naming the address and the manual fix (put the file at ``dest``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from rlkit.errors import DatasetError

CHUNK = 1 << 20
USER_AGENT = "rlkit-dataset-downloader"


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _total_from_headers(status: int, headers, offset: int) -> int | None:
    """Full file size announced by the server, or ``None`` if it did not say."""
    if status == 206:
        match = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
        length = headers.get("Content-Length")
        return offset + int(length) if length is not None else None
    length = headers.get("Content-Length")
    return int(length) if length is not None else None


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, leave=False)


def _no_network(url: str, dest: Path, reason: object) -> DatasetError:
    return DatasetError(
        f"cannot download {url} ({reason}); no network? Download the file elsewhere and place it at "
        f"{dest} (or point RLKIT_DATA at a folder holding it)"
    )


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming a ``.part`` file), verify the size, rename atomically.

    Returns ``dest``.  Raises :class:`DatasetError` when the server is unreachable, answers with an error,
    or the result has the wrong size (a short file is kept as ``.part`` for the next attempt; an
    oversized one is deleted).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0

    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset and expected_size == offset:
            os.replace(part, dest)  # the previous attempt already had every byte
            return dest
        if err.code == 416 and offset:  # cannot resume from here: start again from byte 0
            part.unlink(missing_ok=True)
            return download_file(url, dest, expected_size, progress, timeout)
        raise DatasetError(
            f"cannot download {url}: HTTP {err.code} {err.reason}; check the address, or place the file "
            f"at {dest} yourself"
        ) from err
    except (OSError, http.client.HTTPException) as err:  # URLError, refused, reset, timeout
        reason = getattr(err, "reason", err)
        raise _no_network(url, dest, reason) from err

    with response:
        status = getattr(response, "status", 200)
        if status != 206:
            offset = 0  # the server sent the whole file: start over
        total = _total_from_headers(status, response.headers, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise DatasetError(
                f"{url} announces {total} bytes but {dest.name} is known to have {expected_size}; "
                "the server or mirror serves a different file"
            )
        bar = _progress(total or expected_size, offset, dest.name, progress)
        try:
            with open(part, "ab" if offset else "wb") as fh:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        raise DatasetError(
                            f"download of {url} broke off after {fh.tell()} bytes ({err}); the partial file "
                            f"{part} is kept, run the command again to resume"
                        ) from err
                    if not block:
                        break
                    fh.write(block)
                    if bar is not None:
                        bar.update(len(block))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            if bar is not None:
                bar.close()

    size = part.stat().st_size
    want = expected_size if expected_size is not None else total
    if want is not None and size != want:
        if size > want:
            part.unlink()
            raise DatasetError(
                f"download of {url} produced {size} bytes but {want} were expected; the file was deleted, "
                "run the command again"
            )
        raise DatasetError(
            f"download of {url} stopped at {size} of {want} bytes; the partial file {part} is kept, run the "
            "command again to resume"
        )
    os.replace(part, dest)
    return dest
