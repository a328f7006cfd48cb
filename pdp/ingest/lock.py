"""One ingest at a time per var/: the lock `pdp ingest` and the lab feed share.

The batch refuses when the lock is held (:class:`IngestBusy`: a user sees it and retries); the
lab feed and the opposition commands wait for it (a feed must not die because a batch runs).
The OS drops the lock when its process dies, even on SIGKILL (``flock``).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

__all__ = ["IngestBusy", "ingest_lock", "waiting_ingest_lock"]

_POLL_S = 0.2


class IngestBusy(RuntimeError):
    """Another `pdp ingest` holds the lake's ingest lock."""


@contextmanager
def ingest_lock(lock_path: Path, *, wait: bool) -> Iterator[None]:
    """Hold the ingest lock; `wait`: poll until it is free, else raise :class:`IngestBusy` at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise IngestBusy(f"another ingest is running (lock {lock_path})") from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def waiting_ingest_lock(lock_path: Path) -> AbstractContextManager[None]:
    """The ingest lock, waited for (the lab feed, opposition commands)."""
    return ingest_lock(lock_path, wait=True)
