"""One ``regsearch up`` (or ``demo``) per data directory: ``<data dir>/up.lock``.

Two of them on one data directory would run two coordinators and two sets of workers over the
same SQLite file, queue folder and logs. The lock is an ``flock`` on the file, which holds the
holder's pid for the message: the kernel drops the lock when its last holder exits, so a lock
file left by a dead process (a crash, ``kill -9``) is simply taken over. The components ``up``
starts inherit the locked descriptor (:attr:`DataDirLock.fd`, handed to them by the launcher),
so the directory stays locked while any of them still runs, even if ``up`` itself was killed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from typing_extensions import Self

LOCK_NAME = "up.lock"


class DataDirBusy(RuntimeError):
    """Another ``regsearch up`` (or its components) holds the data directory."""


def _holder(path: Path) -> str:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another regsearch up"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"the components of a regsearch up that has exited (pid {pid}); stop them first"
    except PermissionError:
        pass  # alive, another user's
    return f"regsearch up (pid {pid}); stop it first (Ctrl-C in its terminal, or kill {pid})"


class DataDirLock:
    """``acquire()`` or :class:`DataDirBusy` naming the holder; ``release()`` (also on exit)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, *, workers: int = 0) -> DataDirLock:
        """Lock, and record this pid and its ``workers`` trial processes (``regsearch trial`` reads
        them to take its share of the cores)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(f"the data directory {self.path.parent} is in use by {_holder(self.path)}, "
                              "or set REGSEARCH_DATA_DIR to another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\nworkers {workers}\n".encode())
        self.fd = fd
        return self

    def fds(self) -> tuple[int, ...]:
        """The locked descriptor, for the children to inherit (the lock lives while any of them does)."""
        return (self.fd,) if self.fd is not None else ()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the children's copies keep it locked until they exit
            self.fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def running_workers(data_dir: Path) -> int | None:
    """The trial processes of the ``up`` holding ``data_dir``; None when none holds it."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: an `up` runs
            text = path.read_text().split()
            return int(text[text.index("workers") + 1]) if "workers" in text else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)
