"""The worker's heartbeat: registration, lease renewal, and the database's clock.

A :class:`Heartbeat` runs in its own thread for as long as the process claims work (the
daemon, ``poll``, ``notify``). Every ``workers.heartbeat`` it stamps the worker's row and
renews the leases of everything the worker holds (:meth:`Store.heartbeat`), so a claim
lasts as long as its holder lives, however long the work, and runs out ``workers.lease``
after the holder dies, pauses or loses its database. Every :data:`CLOCK_EVERY` beats it
measures the offset between this host's clock and the database's and hands it to
:func:`~monitor.storage.engine.set_clock_offset`: schedules computed here are then in the
database's time too.

A daemon killed with ``kill -9`` and restarted on the same machine should not wait a
lease for its predecessor's work: each worker records its exact process identity (boot
id, PID namespace, PID and start time, read from ``/proc``), and a worker of the same
machine that finds such a process gone, or a zombie, frees its claims at once
(:meth:`Store.free_worker`). A PID alone would not do (a zombie still "exists"; PIDs are
reused; another namespace has its own); a worker of another machine or namespace is
left to its lease.

A failed heartbeat (database unreachable) is logged once and retried at the next beat;
the claims it could not renew may run out meanwhile, which the fencing checks of the
writes and sends notice. On stop the worker gives back what it holds and leaves the table.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from monitor.config.model import WorkerSettings
from monitor.errors import MonitorError
from monitor.storage.engine import set_clock_offset
from monitor.storage.store import Store

log = logging.getLogger("monitor.app.workers")

#: Beats between two measures of the database's clock.
CLOCK_EVERY = 15


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of process *pid* from /proc, or None if there is none."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name may hold spaces and ")"
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _machine() -> str | None:
    """This boot of this machine and this PID namespace (None: not Linux)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}" if boot else None


def process_identity(pid: int | None = None) -> str | None:
    """``boot/namespace/pid/start``: names one process exactly on its machine."""
    pid = os.getpid() if pid is None else pid
    machine, stat = _machine(), _stat(pid)
    return f"{machine}/{pid}/{stat[1]}" if machine and stat else None


def process_gone(identity: str) -> bool:
    """True if *identity* is a process of this machine and namespace that no longer runs
    (or is a zombie); False if it runs, or cannot be told from here."""
    machine = _machine()
    head, _, rest = identity.rpartition("/")
    base, _, pid = head.rpartition("/")
    if machine is None or base != machine or not pid.isdigit():
        return False
    stat = _stat(int(pid))
    return stat is None or stat[1] != rest or stat[0] in ("Z", "X")


class Heartbeat:
    """Keeps one worker registered and its leases renewed, from a thread of its own."""

    def __init__(self, store: Store, worker: str, settings: WorkerSettings, *, role: str = "daemon") -> None:
        self.store = store
        self.role = role
        self.worker = worker
        self.settings = settings
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.process = process_identity()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beats = 0
        self._failing = False
        self._shown = 0.0  # the clock offset last logged

    def start(self) -> None:
        """Register (the first beat, in the caller's thread: a database that refuses it
        fails the start) and beat from a daemon thread until :meth:`stop`."""
        self._measure_clock()
        self.store.register_worker(self.worker, host=self.host, pid=self.pid, process=self.process, role=self.role)
        self._free_the_dead()
        self._thread = threading.Thread(target=self._run, name="news-monitor-heartbeat", daemon=True)
        self._thread.start()

    def reconfigure(self, settings: WorkerSettings) -> None:
        self.settings = settings

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat):
            self.beat()

    def beat(self) -> None:
        """One heartbeat; a failure is logged (once until it works again), never raised."""
        try:
            if self._beats % CLOCK_EVERY == CLOCK_EVERY - 1:
                self._measure_clock()
            beat = self.store.heartbeat(
                self.worker,
                lease=self.settings.lease,
                host=self.host,
                pid=self.pid,
                process=self.process,
                role=self.role,
                stats=self.store.claim_stats(),
            )
            self._free_the_dead()
        except MonitorError as exc:
            if not self._failing:
                log.error("heartbeat failed (claims may run out and be taken over): %s", exc)
            self._failing = True
            return
        self._beats += 1
        if self._failing:
            log.info("heartbeat works again")
            self._failing = False
        if beat.revived:
            log.warning("worker %s had been silent for long and was forgotten: registered again", self.worker)

    def _free_the_dead(self) -> None:
        """Free at once the claims of workers of this machine whose process is gone."""
        for worker, identity in self.store.processes_on(self.host, besides=self.worker).items():
            if process_gone(identity):
                feeds, alerts = self.store.free_worker(worker)
                self.store.count("takeovers", feeds + alerts)
                log.log(
                    logging.WARNING if feeds or alerts else logging.DEBUG,
                    "worker %s of this machine is gone: took back its %d feed claim(s) and %d alert claim(s)",
                    worker,
                    feeds,
                    alerts,
                )

    def _measure_clock(self) -> None:
        try:
            offset = self.store.clock_offset()
        except MonitorError as exc:
            log.debug("could not read the database's clock: %s", exc)
            return
        if abs(offset - self._shown) >= 1.0:
            side = "behind" if offset > 0 else "ahead of"
            log.info("this host's clock is %.1fs %s the database's: using the database's", abs(offset), side)
            self._shown = offset
        set_clock_offset(offset)

    def stop(self) -> None:
        """Stop beating and give back everything held (a failure is logged: the leases
        then run out by themselves)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            feeds, alerts = self.store.retire_worker(self.worker)
        except MonitorError as exc:
            log.error("could not give back the claims of %s (they run out by themselves): %s", self.worker, exc)
            return
        if feeds or alerts:
            log.info("gave back %d feed claim(s) and %d alert claim(s)", feeds, alerts)
