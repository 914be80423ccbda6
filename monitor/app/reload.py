"""Watching ``config.yaml`` so edits take effect without a signal.

SIGHUP (``systemctl reload``) reloads the config; this module adds the other way users
expect: save the file (by hand, with ``news-monitor watchlist edit``, or from the web
page) and the daemon picks it up within a couple of seconds.

Polling, not inotify: it is portable (macOS, containers, network file systems), needs
no dependency, and costs one ``stat`` per second. The watcher fires only on a change
of *content* (a SHA-256 of the bytes), so ``touch`` or an editor re-saving the same
text does nothing.

Editors write in many ways: atomic rename (vim's default, our own writes), truncate
then write (nano, ``>`` in a shell), or several writes in a row. A change is reported
only after the file has stayed identical for ``settle`` seconds, so a half-written
file is normally never seen; and if one ever is, the daemon validates before it swaps
anything in, rejects it with file, line and field logged, keeps the running config,
and the next write (a new hash) is picked up as usual. The same content is never
reported twice, valid or not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("monitor.app.reload")


@dataclass(frozen=True, slots=True)
class FileState:
    """What a cheap ``stat`` tells: enough to know when the content is worth hashing."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileState | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def content_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # between an editor's unlink and rename: try again next time


class ConfigWatcher:
    """Calls ``on_change`` (in the watcher's thread) once per new, settled content of ``path``.

    ``interval``: seconds between two looks; ``settle``: how long the new content must
    stay unchanged before it is reported. :meth:`check` is the whole logic and can be
    driven by hand (tests, or a scheduler job instead of the thread).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_change: Callable[[], object],
        *,
        interval: float = 1.0,
        settle: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.interval = interval
        self.settle = settle
        self.clock = clock
        self._state = FileState.of(self.path)
        self._reported = content_hash(self.path)  # the content the daemon runs (or rejected)
        self._pending: str | None = None  # new content seen, waiting to settle
        self._pending_since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Look once; True when ``on_change`` was called."""
        state = FileState.of(self.path)
        now = self.clock()
        if state is None:
            self._pending = None  # missing for now (mid-rename, or deleted): keep the running config
            return False
        if state != self._state:
            self._state = state
            digest = content_hash(self.path)
            if digest is None or digest == self._reported:
                self._pending = None
                return False
            if digest != self._pending:
                self._pending, self._pending_since = digest, now
            return False  # changed just now: wait until it settles
        if self._pending is None or now - self._pending_since < self.settle:
            return False
        # Unchanged for `settle` seconds: hash again to be sure (mtime has a coarse grain on
        # some file systems), then report.
        digest = content_hash(self.path)
        if digest != self._pending:
            self._pending, self._pending_since = digest, now
            return False
        self._reported, self._pending = digest, None
        log.info("config file %s changed: reloading", self.path)
        try:
            self.on_change()
        except Exception:
            log.exception("config reload after a file change failed")
        return True

    def acknowledge(self) -> None:
        """The caller is about to read the file: its current content needs no report.

        The daemon calls this at the start of every reload (SIGHUP, web page), so a
        change already being reloaded is not reloaded a second time by the watcher.
        """
        self._state = FileState.of(self.path)
        self._reported = content_hash(self.path)
        self._pending = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the watcher die: it is how edits reach the daemon
                log.exception("config watcher error; still watching")

    def start(self) -> ConfigWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


__all__ = ["ConfigWatcher", "FileState", "content_hash"]
