"""Benchmark one poll cycle over 1,000 feeds: news-monitor against feedparser alone and reader.

Run: ``.venv/bin/pip install -e '.[bench]'`` once, then ``.venv/bin/python bench/poll.py``.
Prints figures only; it asserts nothing. Options: ``--feeds``, ``--runs`` (first
cycles, each on a fresh database), ``--steady-runs``, ``--skip-reader``,
``--database`` (a PostgreSQL URL instead of a fresh SQLite file per run),
``--config-extra`` (JSON config sections for news-monitor, e.g. ``{"cluster": {"enabled":
false}}``; bench/cluster.py uses it), and ``--hostile`` (one cycle over the robustness
matrix instead; see below).

How it measures, so the figures can be trusted:

* The feeds come from ``bench/farm.py``: the real fixture feeds turned into
  ``--feeds`` feeds of 25 entries each, every GUID and link unique (about 40 MB in all).
  They are served with ETag, Last-Modified and 304s by a server in **its own
  process**, so it never takes the GIL from the process being measured.
* Each contender runs in **its own fresh process** (``_measure`` below), and that
  process tree's memory is sampled from outside, every 50 ms, from ``/proc``: the
  peak of the sum of RSS over the whole tree (the main process, the forkserver and the
  parse workers: shared pages counted in every process, so an upper bound) and the
  peak of the sum of PSS (shared pages split between the processes that share them:
  what the tree really occupies).
* news-monitor is run as the CLI and the daemon run it: ``Runtime.build`` on a config
  with the farm's feeds and the shipped watchlists (alerts on: ``catchup_new_feeds:
  false``), then ``pipeline.run_cycle(force=True)``. First cycle = everything new
  (fetch, parse in the pool, match, store stories, matches and alerts); steady state =
  the next forced cycle, where every feed answers 304.
* feedparser alone = ``feedparser.parse`` (default options) on the same bytes, one
  after the other, in one process: the floor a single core can do.
* reader = ``make_reader`` on a fresh database, the same feeds added, then
  ``update_feeds(workers=16)`` (first) and again (steady state: reader sends the
  validators, so every feed answers 304).
* Short runs are repeated and the median printed. Each news-monitor first cycle runs in
  a fresh process (as ``news-monitor poll`` or a starting daemon would), ``--runs`` (3)
  times; the steady cycles run in the last one; its peak memory is the highest of the
  runs. ``--parse-workers`` sets ``poll.parse_workers`` (default: one per CPU).

``--hostile`` serves the robustness matrix of tests/test_robustness.py (500, 404, 410, a server that
never answers, one that trickles a byte a second, a 100 MB body, a gzip bomb, an
entity bomb, random bytes, HTML, an empty body, a redirect loop, a 10 MB feed of tiny
items that feedparser needs a minute for, 200,000 nested elements, a broken response)
beside 50 good feeds, runs ONE cycle with the default settings except
``deadline: 30s``, and prints its time, peak memory, each hostile feed's reason and
whether every good feed's alerts were queued in that cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.farm import build_farm, farm_paths  # noqa: E402

PY = sys.executable


# ---------------------------------------------------------------------- memory sampling


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss * 1024, pss * 1024


class TreeSampler:
    """Samples the memory of a process tree from outside, every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.peak_main = 0  # RSS of the measured process itself
        self.peak_child = 0  # RSS of its biggest child (a parse worker)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            rss = pss = 0
            for p in pids:
                r, s = _rss_pss(p)
                rss += r
                pss += s
                if p == self.pid:
                    self.peak_main = max(self.peak_main, r)
                else:
                    self.peak_child = max(self.peak_child, r)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (its own, not its children's)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class TreeCPU:
    """CPU seconds used by this process and its living children between start and stop:
    unlike wall time, hardly changed by other work on the machine."""

    def __init__(self) -> None:
        self.before = self._now()

    @staticmethod
    def _now() -> dict[int, float]:
        me = os.getpid()
        return {p: _cpu_of(p) for p in _tree(me)}

    def stop(self) -> float:
        after = self._now()
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in after.items())


def run_measured(args: list[str], timeout: float) -> dict[str, Any]:
    """Run ``bench/poll.py _measure ...`` in a fresh process, sampling its tree's memory."""
    proc = subprocess.Popen([PY, __file__, "_measure", *args], stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        sampler.stop()
        return {"error": f"did not finish within {timeout:.0f} s", "peak_rss": sampler.peak_rss,
                "peak_pss": sampler.peak_pss}
    sampler.stop()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}", "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss}
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(
        peak_rss=sampler.peak_rss,
        peak_pss=sampler.peak_pss,
        procs=sampler.peak_procs,
        peak_main=sampler.peak_main,
        peak_child=sampler.peak_child,
    )
    return result


# ---------------------------------------------------------------------------- measures


def _config(
    tmp: Path,
    port: int,
    paths: list[str],
    database: str,
    deadline: str | None = None,
    parse_workers: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A config polling ``paths`` (on the farm server) or full URLs; *extra* top-level
    sections are added or replace the generated ones (``{"cluster": {"enabled": False}}``)."""
    from ruamel.yaml import YAML

    shipped = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for wl in shipped["watchlists"]:
        wl["notify"] = ["hook"]
    poll: dict[str, Any] = {"catchup_new_feeds": False, "parse_workers": parse_workers}
    if deadline:
        poll["deadline"] = deadline
    config = {
        "database": database,
        "log_level": "WARNING",
        "poll": poll,
        "targets": {"hook": "json://127.0.0.1:9/"},  # never delivered here
        "feeds": [
            {"name": f"f{i}", "url": p if p.startswith("http") else f"http://127.0.0.1:{port}{p}"}
            for i, p in enumerate(paths)
        ],
        "aliases": shipped.get("aliases") or {},
        "watchlists": shipped["watchlists"],
        **(extra or {}),
    }
    path = tmp / "config.yaml"
    with path.open("w", encoding="utf-8") as fh:
        YAML().dump(config, fh)
    return path


def _fresh_database(tmp: Path, url: str | None, run: int) -> str:
    if not url:
        return f"sqlite:///{tmp / f'run{run}.db'}"
    from sqlalchemy import create_engine, text

    from monitor.storage.engine import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def _runtime(config: Path) -> Any:
    """The runtime ``news-monitor poll`` builds, with the config's whole poll policy."""
    from monitor.app.daemon import Runtime
    from monitor.config.model import load_config

    loaded = load_config(config)
    rt = Runtime.build(loaded)
    rt.pipeline.reconfigure(rt.pipeline.watch, policy=loaded.config.poll_policy())
    return rt


def measure_monitor(
    port: int,
    n: int,
    steady_runs: int,
    database: str | None,
    parse_workers: int,
    extra: dict[str, Any] | None = None,
    keep: str | None = None,
) -> dict[str, Any]:
    """ONE first cycle (and ``steady_runs`` steady ones) in this fresh process, as a
    daemon or ``news-monitor poll`` would run it; :func:`monitor_runs` repeats it.
    ``keep``: a directory to leave the config and database in (for :func:`cli_steady`)."""
    paths = farm_paths(n)  # not build_farm: 40 MB of bodies would inflate this process's peak
    steadies: list[float] = []
    report_steady = ""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(keep or tmpdir)
        db = _fresh_database(tmp, database, 0)
        rt = _runtime(_config(tmp, port, paths, db, parse_workers=parse_workers, extra=extra))
        try:
            time.sleep(0.5)  # the parse workers are up (started in the background, as in the daemon)
            cpu = TreeCPU()
            t0 = time.perf_counter()
            report = rt.pipeline.run_cycle(force=True)
            first = time.perf_counter() - t0
            first_cpu = cpu.stop()
            report_first = report.summary()
            stored = rt.store.counts()["stories"]
            for _ in range(steady_runs):
                t0 = time.perf_counter()
                report = rt.pipeline.run_cycle(force=True)
                steadies.append(time.perf_counter() - t0)
                report_steady = report.summary()
        finally:
            rt.close()
    return {
        "first": first,
        "first_cpu": first_cpu,
        "steadies": steadies,
        "stories": stored,
        "report_first": report_first,
        "report_steady": report_steady,
    }


def cli_steady(config: Path, runs: int) -> dict[str, Any]:
    """``news-monitor poll --once --no-deliver`` on a store the first cycle filled (every
    feed answers 304), ``runs`` times, each a fresh process timed from its start to its
    exit (interpreter start, imports, ``Runtime.build``, the parse workers, the cycle,
    the close) with its tree's memory sampled; the median and the highest peak."""
    times, peaks, psses = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [PY, "-m", "monitor", "--config", str(config), "poll", "--once", "--no-deliver"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = TreeSampler(proc.pid)
        _, err = proc.communicate(timeout=300)
        times.append(time.perf_counter() - t0)
        sampler.stop()
        if proc.returncode != 0:
            return {"error": f"poll --once exit {proc.returncode}: {err[-300:]}"}
        peaks.append(sampler.peak_rss)
        psses.append(sampler.peak_pss)
    return {"cli_steady": statistics.median(times), "cli_steadies": times, "cli_rss": max(peaks), "cli_pss": max(psses)}


def monitor_runs(args: list[str], runs: int, steady_runs: int) -> dict[str, Any]:
    """``runs`` fresh processes, each one first cycle; steady cycles in the last one, and
    then as many ``poll --once`` processes timed from their start (:func:`cli_steady`).
    Peak memory is the highest of the first-cycle runs."""
    results = []
    with tempfile.TemporaryDirectory() as keep:
        for run in range(runs):
            last_run = run == runs - 1
            more = ["--steady-runs", str(steady_runs if last_run else 0)] + (["--keep", keep] if last_run else [])
            r = run_measured([*args, *more], 900)
            if "error" in r:
                return r
            results.append(r)
        cli = cli_steady(Path(keep) / "config.yaml", steady_runs) if steady_runs else {}
    if "error" in cli:
        return cli
    last = results[-1]
    return {
        "first": statistics.median(r["first"] for r in results),
        "firsts": [r["first"] for r in results],
        "cpu": statistics.median(r["first_cpu"] for r in results),
        "steady": statistics.median(last["steadies"]),
        "steadies": last["steadies"],
        "stories": last["stories"],
        "report_first": last["report_first"],
        "report_steady": last["report_steady"],
        **cli,
        **{k: max(r[k] for r in results) for k in ("peak_rss", "peak_pss", "procs", "peak_main", "peak_child")},
    }


def measure_feedparser(n: int, runs: int) -> dict[str, Any]:
    import feedparser

    bodies = [f.body for f in build_farm(n)]
    times = []
    cpus = []
    entries = 0
    for _ in range(runs):
        entries = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for body in bodies:
            entries += len(feedparser.parse(body).entries)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"first": statistics.median(times), "firsts": times, "cpu": statistics.median(cpus), "entries": entries}


def measure_reader(port: int, n: int, runs: int, steady_runs: int) -> dict[str, Any]:
    import logging

    from reader import make_reader

    logging.disable(logging.WARNING)
    paths = farm_paths(n)
    firsts: list[float] = []
    cpus: list[float] = []
    steadies: list[float] = []
    entries = 0
    with tempfile.TemporaryDirectory() as tmpdir:
        for run in range(runs):
            reader = make_reader(str(Path(tmpdir) / f"reader{run}.sqlite"))
            for p in paths:
                reader.add_feed(f"http://127.0.0.1:{port}{p}")
            t0, c0 = time.perf_counter(), time.process_time()
            reader.update_feeds(workers=16, scheduled=False)
            firsts.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            entries = reader.get_entry_counts().total
            if run == runs - 1:
                for _ in range(steady_runs):
                    t0 = time.perf_counter()
                    reader.update_feeds(workers=16, scheduled=False)
                    steadies.append(time.perf_counter() - t0)
            reader.close()
    return {
        "first": statistics.median(firsts),
        "firsts": firsts,
        "cpu": statistics.median(cpus),
        "steady": statistics.median(steadies),
        "steadies": steadies,
        "entries": entries,
    }


def measure_hostile(port: int, good: int, database: str | None, hostile: dict[str, str]) -> dict[str, Any]:
    urls = [f"http://127.0.0.1:{port}{p}" for p in farm_paths(good)] + list(hostile)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = _fresh_database(tmp, database, 0)
        rt = _runtime(_config(tmp, port, urls, db, deadline="30s"))
        try:
            # catchup_new_feeds is off: the good feeds' matching stories are alerted in this
            # very cycle (the seed feed's story matches all three shipped watchlists).
            t0 = time.perf_counter()
            report = rt.pipeline.run_cycle(force=True)
            elapsed = time.perf_counter() - t0
            feeds = {f.name: f for f in rt.store.feeds()}
            reasons = {}
            for i, url in enumerate(urls):
                if url in hostile:
                    f = feeds[f"f{i}"]
                    reasons[url.split("/", 3)[3]] = {
                        "expected": hostile[url],
                        "got": f.last_error_reason if f.state != "ok" else "ok",
                    }
            good_ok = sum(1 for i in range(good) if feeds[f"f{i}"].state == "ok")
            counts = rt.store.counts()
            seed = f"f{urls.index(next(u for u in hostile if u.endswith('/h/seed.xml')))}"
            seed_alerts = _alerts_of(rt, seed)
        finally:
            rt.close()
    return {
        "cycle": elapsed,
        "summary": report.summary(),
        "reasons": reasons,
        "good_ok": good_ok,
        "good": good,
        "stories": counts["stories"],
        "alerts": counts["alerts"],
        "seed_alerts": seed_alerts,
    }


def _alerts_of(rt: Any, feed: str) -> list[str]:
    """Watchlists alerted for the stories of one feed (the outbox rows queued)."""
    from sqlalchemy import select

    from monitor.storage.schema import Alert, Feed, Story

    with rt.store.engine.connect() as conn:
        return sorted(
            conn.execute(
                select(Alert.watchlist)
                .join(Story, Story.id == Alert.story_id)
                .join(Feed, Feed.id == Story.feed_id)
                .where(Feed.name == feed)
            ).scalars()
        )


def _measure(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["monitor", "feedparser", "reader", "hostile"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--feeds", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steady-runs", type=int, default=5)
    p.add_argument("--database", default=None)
    p.add_argument("--hostile-urls", default="{}", help="JSON: url -> expected reason")
    p.add_argument("--parse-workers", type=int, default=0)
    p.add_argument("--config-extra", default="{}", help="JSON: config sections added or replaced")
    p.add_argument("--keep", default=None, help="leave the config and database in this directory")
    a = p.parse_args(argv)
    if a.what == "monitor":
        extra = json.loads(a.config_extra)
        out = measure_monitor(a.port, a.feeds, a.steady_runs, a.database, a.parse_workers, extra, a.keep)
    elif a.what == "feedparser":
        out = measure_feedparser(a.feeds, a.runs)
    elif a.what == "reader":
        out = measure_reader(a.port, a.feeds, a.runs, a.steady_runs)
    else:
        out = measure_hostile(a.port, a.feeds, a.database, json.loads(a.hostile_urls))
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------- printing


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


def _server(n: int, hostile: bool) -> tuple[subprocess.Popen[str], int, dict[str, str]]:
    args = [PY, str(ROOT / "bench" / "farm.py"), "serve", "--feeds", str(n)] + (["--hostile"] if hostile else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, int(info["port"]), info["hostile"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        _measure(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="first cycles (median)")
    parser.add_argument("--steady-runs", type=int, default=5, help="steady-state cycles (median)")
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument("--database", default=None, help="PostgreSQL URL (its public schema is wiped!)")
    parser.add_argument("--hostile", action="store_true", help="one cycle over the robustness matrix")
    parser.add_argument("--parse-workers", type=int, default=0, help="poll.parse_workers (0: one per CPU)")
    parser.add_argument("--skip-feedparser", action="store_true")
    parser.add_argument("--idle", default="", metavar="SECONDS[,SECONDS...]",
                        help="only an idle daemon's memory, at these seconds after its start (20,135)")
    parser.add_argument(
        "--config-extra",
        default="{}",
        help='JSON config sections for news-monitor, e.g. \'{"cluster": {"enabled": false}}\'',
    )
    args = parser.parse_args()
    if args.idle:
        _idle([float(x) for x in args.idle.split(",")])
        return

    server, port, hostile = _server(args.feeds if not args.hostile else 50, args.hostile)
    common = ["--port", str(port), "--runs", str(args.runs), "--steady-runs", str(args.steady_runs)]
    db = ["--database", args.database] if args.database else []
    try:
        if args.hostile:
            _hostile(port, db, hostile)
            return
        print(f"{args.feeds} feeds x 25 entries, {os.cpu_count()} CPUs; medians of {args.runs} first "
              f"cycles and {args.steady_runs} steady cycles", flush=True)
        results: dict[str, dict[str, Any]] = {}
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [] if args.skip_feedparser else [
            ("feedparser", lambda: run_measured(["feedparser", "--feeds", str(args.feeds), *common], 900)),
        ]
        steps += [
            (
                "news-monitor",
                lambda: monitor_runs(
                    ["monitor", "--feeds", str(args.feeds), "--port", str(port), *db,
                     "--parse-workers", str(args.parse_workers), "--config-extra", args.config_extra],
                    args.runs,
                    args.steady_runs,
                ),
            ),
        ]
        if not args.skip_reader:
            steps.append(("reader", lambda: run_measured(["reader", "--feeds", str(args.feeds), *common], 1800)))
        for name, step in steps:
            results[name] = step()
            r = results[name]
            if "error" in r:
                print(f"  {name}: {r['error']}", flush=True)
                continue
            extra = f", steady {r['steady']:.2f} s" if "steady" in r else ""
            print(f"  {name}: first {r['first']:.2f} s ({r['cpu']:.1f} CPU s){extra}, peak RSS {_mb(r['peak_rss'])}, "
                  f"PSS {_mb(r['peak_pss'])} (main process {_mb(r['peak_main'])}, "
                  f"{r['procs'] - 1} children of up to {_mb(r['peak_child'])}); "
                  f"runs: {', '.join(f'{x:.2f}' for x in r['firsts'])}",
                  flush=True)
            if "cli_steady" in r:
                print(f"  {name}: steady cycle from process start (poll --once --no-deliver) "
                      f"{r['cli_steady']:.2f} s (runs: {', '.join(f'{x:.2f}' for x in r['cli_steadies'])}), "
                      f"peak RSS {_mb(r['cli_rss'])}, PSS {_mb(r['cli_pss'])}", flush=True)
        _table(results)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


def _table(results: dict[str, dict[str, Any]]) -> None:
    fp = results.get("feedparser", {})
    nm = results.get("news-monitor", {})
    rd = results.get("reader", {})
    print()
    print(f"{'':26}{'first cycle':>13}{'(CPU time)':>12}{'steady state':>14}{'peak RSS (tree)':>17}"
          f"{'peak PSS (tree)':>17}")
    for name, r in (("feedparser alone, 1 core", fp), ("news-monitor", nm), ("reader (16 workers)", rd)):
        if not r or "error" in r:
            continue
        steady = f"{r['steady']:.2f} s" if "steady" in r else "-"
        print(f"{name:26}{r['first']:>11.2f} s{r['cpu']:>10.1f} s{steady:>14}{_mb(r['peak_rss']):>17}"
              f"{_mb(r['peak_pss']):>17}")
    if nm and "error" not in nm:
        print()
        print(f"news-monitor first cycle: {nm['report_first']}")
        print(f"news-monitor steady state: {nm['report_steady']}")
        if fp and "error" not in fp:
            print(f"first cycle / feedparser alone: {nm['first'] / fp['first']:.2f} "
                  f"(CPU time: {nm['cpu'] / fp['cpu']:.2f})")
        if rd and "error" not in rd:
            print(f"first cycle / reader: {nm['first'] / rd['first']:.2f}; "
                  f"steady state / reader: {nm['steady'] / rd['steady']:.2f}; "
                  f"peak RSS / reader: {nm['peak_rss'] / rd['peak_rss']:.2f}")


def measure_idle(moments: list[float]) -> list[dict[str, Any]]:
    """``news-monitor run`` on the bundled config.yaml (copied to a temporary directory),
    its tree's memory sampled from outside at each of ``moments`` seconds after the
    process started (on a machine without network every feed fails at once, so the
    daemon is idle by then), then SIGTERM. The database is created and migrated first by
    ``news-monitor feeds``, so this is a daemon restarted on its database, as a service
    spends its life (a first start also imports Alembic for the migration). The parse
    workers started for the first cycle exit after ``WORKER_IDLE_EXIT`` (120 s) idle: a
    moment past that shows the daemon between cycles without them."""
    import shutil
    import signal

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        config = Path(tmpdir) / "config.yaml"
        shutil.copy(ROOT / "config.yaml", config)
        subprocess.run([PY, "-m", "monitor", "--config", str(config), "feeds"], cwd=tmpdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        proc = subprocess.Popen(
            [PY, "-m", "monitor", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmpdir,
        )
        started = time.monotonic()
        sampler = TreeSampler(proc.pid)
        for moment in sorted(moments):
            time.sleep(max(0.0, started + moment - time.monotonic()))
            pids = _tree(proc.pid)
            now = [_rss_pss(p) for p in pids]
            results.append({
                "moment": moment,
                "rss": sum(r for r, _ in now),
                "pss": sum(s for _, s in now),
                "main_rss": now[0][0],
                "procs": len(pids),
                "peak_rss": sampler.peak_rss,
                "peak_pss": sampler.peak_pss,
            })
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sampler.stop()
    return results


def _idle(moments: list[float]) -> None:
    for r in measure_idle(moments):
        print(f"idle daemon (news-monitor run, bundled config, restarted on its database), {r['moment']:g} s after "
              f"start: RSS (tree) {_mb(r['rss'])}, PSS {_mb(r['pss'])}, main process {_mb(r['main_rss'])}, "
              f"{r['procs'] - 1} children; peak until then RSS {_mb(r['peak_rss'])}, PSS {_mb(r['peak_pss'])}")


def _hostile(port: int, db: list[str], hostile: dict[str, str]) -> None:
    print("hostile cycle: 50 good feeds + the robustness matrix, default settings but deadline 30s", flush=True)
    r = run_measured(["hostile", "--port", str(port), "--feeds", "50", "--hostile-urls", json.dumps(hostile), *db],
                     600)
    if "error" in r:
        print(f"  {r['error']}")
        return
    print(f"  one cycle: {r['cycle']:.1f} s, peak RSS (tree) {_mb(r['peak_rss'])}, peak PSS {_mb(r['peak_pss'])} "
          f"(main process {_mb(r['peak_main'])}, biggest parse worker {_mb(r['peak_child'])})")
    print(f"  {r['summary']}")
    print(f"  good feeds stored: {r['good_ok']}/{r['good']}, stories {r['stories']}, "
          f"alerts queued in the cycle: {r['alerts']}; the seed feed's: {', '.join(r['seed_alerts']) or 'none'}")
    for path, v in r["reasons"].items():
        mark = "ok " if v["got"] in v["expected"].split(" or ") else "!! "
        print(f"  {mark}{path:22} expected {v['expected']:17} got {v['got']}")


if __name__ == "__main__":
    main()
