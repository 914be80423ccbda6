"""The parse worker pool: every parse in a worker process, under a deadline.

Parsing is the expensive step of a poll cycle (a process per core is how a second core
helps), and feedparser can be made to take minutes (a dense 10 MB feed, 200,000 nested
elements), so :class:`ParsePool` runs the registry's
:func:`monitor.ingest.formats.parse_feed` (whatever the format) in worker processes, each
job under a deadline, in a worker that is killed and replaced when it is overrun
(``reason="parse_timeout"``) or grows past its memory cap (``reason="parse_memory"``);
see the class for the rest of its guarantees.

A worker is a fresh interpreter started as ``python -c`` :data:`_WORKER_CODE`, with the
directory that holds the ``monitor`` package put first on its ``PYTHONPATH``, so it
imports this module (and through it the formats) from the same tree as the daemon.

A worker that cannot be started at all (the interpreter may not be executed, the process
table is full: an ``OSError`` from ``subprocess.Popen``) fails the job that needed it with
``reason="worker_start"`` at once, and every later job tries to start one again: the
cycle ends with each of its feeds failed, and the next cycle starts afresh. The first
such failure after a working start is logged once at ERROR, naming the executable and
the OS error; the feeds' own failures say the rest.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from monitor.errors import ParseError
from monitor.ingest.formats import ParsedFeed, parse_feed

__all__ = [
    "BIG_BODY",
    "WORKER_IDLE_EXIT",
    "WORKER_MEMORY_LIMIT",
    "WORKER_RECYCLE_RSS",
    "ParseJob",
    "ParsePool",
]

log = logging.getLogger("monitor.parse")

#: A body this big is parsed while no other parse runs: feedparser needs 10 to 20 times a
#: document's size in memory, and two big parses at once would add their peaks.
BIG_BODY = 1_000_000
#: Most resident memory a worker may use while parsing (watched every 50 ms); a parse
#: that needs more is stopped (``reason="parse_memory"``). A legitimate 10 MB feed needs
#: about 110 MB; 10 MB of tiny items or one 10 MB description need 200-300 MB.
WORKER_MEMORY_LIMIT = 160 * 2**20
#: A worker whose resident memory is still above this after a job is replaced (Python
#: keeps freed memory for reuse, so one big feed would otherwise pin its peak for good).
WORKER_RECYCLE_RSS = 96 * 2**20
#: A worker idle this long exits; the next job starts a new one (a fifth of a second).
#: Between the cycles of a small install, the daemon then holds no parser memory at all.
WORKER_IDLE_EXIT = 120.0
_START_TIMEOUT = 60.0
_WATCH_EVERY = 0.05


@dataclass(frozen=True, slots=True)
class ParseJob:
    """The arguments of one :func:`parse_feed` call, sent to a worker process."""

    body: bytes
    url: str
    content_type: str | None
    fetched_at: datetime
    default_language: str | None = None


def _rss_of(pid: int | str = "self") -> int:
    """Resident memory of a process, from /proc (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_main() -> None:
    """Entry point of a worker process (``python -c "...; _worker_main()"``).

    Reads jobs on stdin (the pickled :class:`ParseJob` without its body, then the body as
    raw bytes: no pickled copy of a 10 MB body on either side), writes
    ``("ok", ParsedFeed, retire)`` or ``("error", (message, reason), retire)`` on stdout,
    until stdin closes (which is also what happens when the daemon dies, even by
    SIGKILL). ``retire``: the worker exits after this reply (its memory stayed above
    ``recycle_rss``). Exceptions travel as plain values (a ParseError with keyword
    arguments does not unpickle). ``argv``: recycle_rss, memory_limit, backstop seconds.
    The address space is capped at twice ``memory_limit`` above the worker's start (the
    parent's watch is the real limit; this one stops a parse that allocates faster than
    it looks), and SIGALRM is armed at ``backstop`` seconds around each job, so a worker
    orphaned in a long parse ends by itself.
    """
    recycle_rss, memory_limit, backstop = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_limit:
        try:
            import resource

            with open("/proc/self/statm", "rb") as fh:
                mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            cap = mapped + 2 * memory_limit
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        except (ImportError, ValueError, OSError, IndexError):
            pass
    import feedparser  # noqa: F401  (now, not during the first job's deadline)

    # The protocol owns fds 0 and 1; anything printed by a library goes to stderr.
    reader = Connection(os.dup(0), writable=False)
    writer = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    writer.send(("ready", os.getpid(), False))
    while True:
        try:
            job = reader.recv()
            if job == _PROBE_MODULES:  # a diagnostic, not a parse: no body follows
                writer.send(("ok", sorted(n for n, m in sys.modules.items() if m is not None), False))
                continue
            body = reader.recv_bytes()
        except (EOFError, OSError, ValueError):
            return
        signal.alarm(max(1, int(backstop)))
        try:
            reply: tuple[str, Any] = (
                "ok",
                parse_feed(
                    body,
                    url=job.url,
                    content_type=job.content_type,
                    fetched_at=job.fetched_at,
                    default_language=job.default_language,
                ),
            )
        except ParseError as exc:
            reply = ("error", (str(exc), exc.reason))
        except MemoryError:
            reply = ("error", ("parsing ran out of memory", "parse_memory"))
        except BaseException as exc:  # RecursionError, a bug in normalising
            reply = ("error", (f"the parser crashed ({type(exc).__name__}: {exc})", "parser_crash"))
        finally:
            signal.alarm(0)
        del job, body
        retire = _rss_of() > recycle_rss
        try:
            writer.send((*reply, retire))
        except (OSError, ValueError):
            return
        if retire:
            return


#: Sent instead of a job: the worker answers with the names of the modules it has loaded.
_PROBE_MODULES = "modules?"
_WORKER_CODE = "from monitor.ingest.pool import _worker_main; _worker_main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Worker:
    """One worker process and the pipes to it (used by one slot thread only).

    A fresh interpreter (``subprocess``), not a fork: forking the daemon's threaded
    process can deadlock the child, and multiprocessing's spawn and forkserver re-import
    the parent's ``__main__`` in every worker (the whole CLI, for nothing).
    """

    def __init__(self, pool: ParsePool) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        args = [str(pool.recycle_rss), str(pool.memory_limit or 0), str(pool.timeout * 3 + 30)]
        executable = pool.executable or sys.executable
        try:
            self.process = subprocess.Popen(
                [executable, "-c", _WORKER_CODE, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ParseError(
                f"cannot start the parser process {executable}: {why} (errno {exc.errno})", reason="worker_start"
            ) from exc
        assert self.process.stdin is not None and self.process.stdout is not None
        self.send_conn = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.recv_conn = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        try:
            ready = self.recv_conn.poll(_START_TIMEOUT)
            if ready:
                self.recv_conn.recv()
        except (EOFError, OSError) as exc:
            self.kill()
            raise ParseError("the parser process died while starting", reason="parser_crash") from exc
        if not ready:
            self.kill()
            raise ParseError("the parser process did not start", reason="parser_crash")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, job: ParseJob, *, probe: bool = False) -> None:
        if probe:
            self.send_conn.send(_PROBE_MODULES)
            return
        self.send_conn.send(ParseJob(b"", job.url, job.content_type, job.fetched_at, job.default_language))
        self.send_conn.send_bytes(job.body)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._close()

    def retire(self) -> None:
        """It said it exits after its reply: close our ends and reap it."""
        self.send_conn.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._close()

    def _close(self) -> None:
        for conn in (self.send_conn, self.recv_conn):
            if not conn.closed:
                conn.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass


@dataclass(slots=True)
class _Task:
    job: ParseJob
    future: Future[Any]  # a ParsedFeed; the module names for a probe
    probe: bool = False


class ParsePool:
    """Runs :func:`parse_feed` in worker processes, each job under a deadline.

    Guarantees, each tested in ``tests/test_parse.py``:

    * **Bounded time.** A job that runs longer than ``timeout`` seconds is stopped by
      killing its worker (nothing else can stop feedparser mid-document); its future
      fails with ``ParseError(reason="parse_timeout")`` and a fresh worker takes the
      next job. A worker that dies (segfault, OOM killer) fails its job as
      ``parser_crash``; the pool carries on.
    * **Bounded memory.** A worker whose resident memory passes ``memory_limit`` while
      parsing is stopped the same way (``reason="parse_memory"``): feedparser can need
      twenty times a document's size. Bodies over ``big_body`` are parsed while no
      other parse runs. :meth:`submit` blocks while ``backlog`` jobs are queued or
      running, so a fast network cannot pile bodies up here. A worker still above
      ``recycle_rss`` after a job is replaced, and one idle for ``idle_exit`` seconds
      exits (the next job starts a new one).
    * **No hang when workers cannot start.** A worker that cannot be started fails its
      job with ``reason="worker_start"``; the next job tries again.
    * **Lean workers.** Each worker is a fresh interpreter that imports only this
      module (feedparser included): about 27 MB (17 MB of it private), started on first
      use (a few tenths of a second) and replaced the same way. :meth:`probe_modules`
      reports a worker's modules; ``tests/test_lean.py`` holds them to the parser, our
      parsing modules and the standard library.

    Not a ``ProcessPoolExecutor``: that one cannot kill a single overrunning worker
    (terminating it breaks the whole executor and fails every job in it).
    """

    def __init__(
        self,
        workers: int,
        *,
        timeout: float,
        backlog: int | None = None,
        memory_limit: int | None = WORKER_MEMORY_LIMIT,
        recycle_rss: int = WORKER_RECYCLE_RSS,
        big_body: int = BIG_BODY,
        idle_exit: float = WORKER_IDLE_EXIT,
        executable: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self.workers = workers
        self.timeout = timeout
        self.backlog = backlog or 2 * workers
        self.memory_limit = memory_limit
        self.recycle_rss = recycle_rss
        self.big_body = big_body
        self.idle_exit = idle_exit
        self.executable = executable  # the interpreter workers run (None: this one's)
        self._jobs: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._room = threading.Semaphore(self.backlog)
        # Big jobs run alone: a big job takes the write side, every other job a read side.
        self._gate = _SharedExclusive()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._live: dict[int, _Worker] = {}  # slot -> its current worker
        self._closed = False
        self._start_failing = False  # the last start failed with worker_start (logged once)
        self.restarts = 0  # workers replaced after a timeout, a memory overrun or a crash

    def warm(self) -> None:
        """Start every worker now, in the background (a daemon's first cycle then does
        not wait the fifth of a second an interpreter takes to import feedparser)."""
        with self._lock:
            while not self._closed and len(self._threads) < self.workers:
                self._add_slot(warm=True)

    def submit(self, job: ParseJob) -> Future[ParsedFeed]:
        """Queue ``job``; blocks while the pool holds ``backlog`` jobs already."""
        return self._queue(job, probe=False)

    def probe_modules(self) -> Future[list[str]]:
        """The names of the modules loaded in the worker that takes this probe from the
        queue (after the parses queued before it), as that worker's ``sys.modules`` lists
        them: how ``tests/test_lean.py`` checks that workers import only the parser."""
        return self._queue(ParseJob(b"", "", None, datetime.min), probe=True)

    def _queue(self, job: ParseJob, *, probe: bool) -> Future[Any]:
        while not self._room.acquire(timeout=0.5):
            if self._closed:
                break
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                self._room.release()
                future.set_exception(ParseError("the parser pool is closed", reason="cancelled"))
                return future
            if len(self._threads) < self.workers:
                self._add_slot(warm=False)
        future.add_done_callback(lambda _: self._room.release())
        self._jobs.put(_Task(job, future, probe))
        return future

    def _add_slot(self, *, warm: bool) -> None:
        slot = len(self._threads)
        thread = threading.Thread(target=self._run, args=(slot, warm), name=f"news-monitor-parse-{slot}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for diagnostics and tests)."""
        with self._lock:
            return [w.pid for w in self._live.values() if w.alive()]

    def close(self) -> None:
        """Stop the workers (a running parse is killed) and fail the jobs still queued."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
            workers = list(self._live.values())
        for _ in threads:
            self._jobs.put(None)
        for worker in workers:  # a slot thread blocked on a long parse wakes up at once
            if worker.alive():
                worker.process.kill()
        for thread in threads:
            thread.join(10)
        while True:
            try:
                task = self._jobs.get_nowait()
            except queue.Empty:
                break
            if task is not None and task.future.set_running_or_notify_cancel():
                task.future.set_exception(ParseError("the parser pool was closed", reason="cancelled"))

    # -- slot threads

    def _run(self, slot: int, warm: bool = False) -> None:
        worker: _Worker | None = None
        if warm:
            try:
                worker = self._start(slot)
            except ParseError as exc:  # the first job will try again, and report it
                if exc.reason != "worker_start":  # _start logged that one already
                    log.warning("parser worker did not start: %s", exc)
            except Exception:  # this thread must live on to answer the queued jobs
                log.exception("parser worker did not start")
        try:
            while True:
                try:
                    task = self._jobs.get(timeout=self.idle_exit)
                except queue.Empty:
                    if worker is not None:  # idle: give its memory back until the next job
                        worker.retire()
                        with self._lock:
                            self._live.pop(slot, None)
                        worker = None
                    continue
                if task is None or self._closed:
                    if task is not None and task.future.set_running_or_notify_cancel():
                        task.future.set_exception(ParseError("the parser pool was closed", reason="cancelled"))
                    return
                if not task.future.set_running_or_notify_cancel():
                    continue
                big = len(task.job.body) > self.big_body
                self._gate.acquire(exclusive=big)
                if big:
                    self._park_others(slot)
                try:
                    worker, outcome = self._one(slot, worker, task)
                except Exception as exc:  # a bug here must not leave a future unresolved
                    log.exception("parser pool slot %d failed", slot)
                    if worker is not None:
                        worker.kill()
                    worker = None
                    outcome = ParseError(f"the parser pool failed ({type(exc).__name__})", reason="parser_crash")
                finally:
                    self._gate.release(exclusive=big)
                if isinstance(outcome, BaseException):
                    task.future.set_exception(outcome)
                else:
                    task.future.set_result(outcome)
        finally:
            if worker is not None:
                worker.kill()
            with self._lock:
                self._live.pop(slot, None)

    def _park_others(self, slot: int) -> None:
        """Stop the other (idle) workers while a big job runs: their memory is what a big
        parse needs. They are idle for sure: the big job holds the gate alone. Their slot
        threads start fresh workers for their next jobs."""
        with self._lock:
            idle = [w for s, w in self._live.items() if s != slot]
        for worker in idle:
            if worker.alive():
                worker.process.kill()
                worker.process.wait(5)

    def _start(self, slot: int) -> _Worker:
        try:
            worker = _Worker(self)
        except ParseError as exc:
            if exc.reason == "worker_start":
                with self._lock:
                    first, self._start_failing = not self._start_failing, True
                if first:  # one line for the whole streak, not one per feed
                    log.error("%s; every feed parsed meanwhile fails with reason worker_start", exc)
            raise
        with self._lock:
            if self._start_failing:
                log.info("parser process started again (%s)", self.executable or sys.executable)
            self._start_failing = False
            closed = self._closed
            if not closed:
                self._live[slot] = worker
        if closed:
            # close() ran while this worker started: it could not kill what it did not see.
            worker.kill()
            raise ParseError("the parser pool was closed", reason="cancelled")
        return worker

    def _stopped(self, worker: _Worker, error: ParseError) -> tuple[None, ParseError]:
        worker.kill()
        self.restarts += 1
        if self._closed:
            return None, ParseError("the parser pool was closed", reason="cancelled")
        return None, error

    def _one(
        self, slot: int, worker: _Worker | None, task: _Task
    ) -> tuple[_Worker | None, ParsedFeed | list[str] | ParseError]:
        """Run one job; returns the worker to use next (None: start a new one)."""
        job = task.job
        try:
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.kill()
                worker = self._start(slot)
            try:
                worker.send(job, probe=task.probe)
            except (OSError, ValueError):  # it died while idle: one fresh try
                worker.kill()
                worker = self._start(slot)
                worker.send(job, probe=task.probe)
        except ParseError as exc:
            return None, exc
        except (OSError, ValueError) as exc:
            if worker is not None:
                worker.kill()
            return None, ParseError(f"cannot reach the parser process ({exc})", reason="parser_crash")
        size = len(job.body)
        task.job = job = ParseJob(b"", job.url, None, job.fetched_at)  # the worker has the body now: free it
        started = time.monotonic()
        deadline = started + self.timeout
        while True:  # wait for the reply, watching the clock and the worker's memory
            left = deadline - time.monotonic()
            if left <= 0:
                return self._stopped(
                    worker,
                    ParseError(
                        f"parsing took longer than {self.timeout:g} s and was stopped "
                        f"({size:,} bytes; the feed is too big or built to be slow)",
                        reason="parse_timeout",
                    ),
                )
            if worker.recv_conn.poll(min(left, _WATCH_EVERY)):
                break
            if self.memory_limit and _rss_of(worker.pid) > self.memory_limit:
                return self._stopped(
                    worker,
                    ParseError(
                        f"parsing needed more than {self.memory_limit // 2**20} MB of memory and was "
                        f"stopped ({size:,} bytes; the feed is too big or built to be heavy)",
                        reason="parse_memory",
                    ),
                )
        try:
            kind, payload, retire = worker.recv_conn.recv()
        except (EOFError, OSError, ValueError) as exc:
            worker.kill()
            code = worker.process.returncode
            why = f"exit code {code}" if code is not None else type(exc).__name__
            return self._stopped(
                worker,
                ParseError(
                    f"the parser process died after {time.monotonic() - started:.1f} s ({why})",
                    reason="parser_crash",
                ),
            )
        if retire:
            worker.retire()
            with self._lock:
                self._live.pop(slot, None)
            worker = None
        if kind == "ok":
            return worker, payload
        message, reason = payload
        return worker, ParseError(message, reason=reason)


class _SharedExclusive:
    """A lock many may hold at once (shared), or one alone (exclusive); waiting exclusive
    holders block new shared ones, so a big job is not starved by a stream of small ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    def acquire(self, *, exclusive: bool) -> None:
        with self._cond:
            if exclusive:
                self._waiting += 1
                self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
                self._waiting -= 1
                self._exclusive = True
            else:
                self._cond.wait_for(lambda: not self._exclusive and self._waiting == 0)
                self._shared += 1

    def release(self, *, exclusive: bool) -> None:
        with self._cond:
            if exclusive:
                self._exclusive = False
            else:
                self._shared -= 1
            self._cond.notify_all()
