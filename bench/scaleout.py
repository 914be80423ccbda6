"""Benchmark several daemons on one PostgreSQL: the time to poll every feed once, for 1, 2 and 3 daemons.

Run: ``.venv/bin/python bench/scaleout.py`` (PostgreSQL from ``--database``, else
``MONITOR_TEST_POSTGRES_URL``, else ``postgresql+psycopg://postgres@127.0.0.1:5432/test``;
each measurement gets a fresh schema, dropped afterwards). Prints figures only; it
asserts nothing. Options: ``--feeds`` (3000), ``--ports`` (100), ``--entries`` (5 per
feed), ``--daemons`` (``1,2,3``), ``--runs`` (medians of that many; 3).

How it measures, so the figures can be trusted:

* The feeds come from ``bench/farm.py`` (the real fixture feeds, every GUID and link
  unique), ``--entries`` items each, served with ETag, Last-Modified and 304s by a
  server in **its own process** (it never takes the GIL from a daemon), on ``--ports``
  ports of 127.0.0.1: as many ``host:port`` keys, each a "site" under the fleet's
  ``per_host`` limit. Every answer is held 50-200 ms (fixed per feed, drawn from a seeded
  generator), as real servers take: a round is bound by waiting on the network, which
  is what more daemons can overlap; the parse work on top is what the machine's cores bound.
* The daemons are real ``news-monitor run`` processes (:class:`tests.support.fleet.Fleet`),
  all started at the same instant on a fresh schema, with the shipped watchlists and
  default settings except ``poll.tick: 0.5s`` (a round starts within half a second) and
  ``poll.interval: 1h`` (no feed comes due twice within a round).
* **First round**: every feed is new (fetch, parse in the parse workers, match, store).
  **Steady round**: then every feed is made due at once (``next_poll_at`` set to now in
  the database) and every feed answers 304. A round runs from the server's first
  request to the moment the daemons' ``cycle: N feeds polled`` log lines add up to every
  feed (both on ``CLOCK_MONOTONIC``, shared by the processes); daemon start-up is not
  counted.
* Speed-up = the 1-daemon round time / the N-daemon round time, both measured in this
  run. Also printed: each daemon's share of the feeds, the most requests one
  ``host:port`` answered at once (``per_host`` is 2 for the whole fleet), and the
  machine's load average before and after (other work on the machine slows every
  figure; on 2 cores, 3 daemons compete for them).

Measured on main at 5ab76a3 and again with 15135ec (2 CPUs, load average 3 to 11 from
other work), one run each: steady round 26.85 / 26.23 s with 1 daemon, 14.00 / 14.32 s
with 2 (1.92x / 1.83x, shares about half each), 10.66 / 14.23 s with 3 (2.52x / 1.84x;
shares 989/1077/934, then 1285/493/1222); first round 55-62 s whatever the number of
daemons (no speed-up: the first daemon up took 2979 to 3000 of the feeds, the others
none: it holds a claim on every host, and a host held by a live worker is left to it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.farm import LAST_MODIFIED, build_farm  # noqa: E402

PY = sys.executable
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ------------------------------------------------------------------------------ the server


def serve(n: int, ports: int, entries: int) -> None:
    """Serve the farm over ``ports`` ports; print {"urls": [...]}; then answer commands
    on stdin: ``mark`` (forget the requests so far), ``stats`` (print {"first": monotonic
    time of the first request since the mark or null, "feeds": distinct feeds requested,
    "most_in_flight": the most requests one port answered at once})."""
    from tests.support.httpserver import HTTPTestServer, Static

    rng = random.Random(7)
    servers = [HTTPTestServer().start() for _ in range(ports)]
    urls = []
    for i, feed in enumerate(build_farm(n, entries)):
        server = servers[i % ports]
        behaviour = Static(
            body=feed.body,
            content_type="application/rss+xml",
            etag=feed.etag,
            last_modified=LAST_MODIFIED,
            delay=rng.uniform(0.05, 0.2),
        )
        urls.append(server.route(feed.path, behaviour))
    print(json.dumps({"urls": urls}), flush=True)
    for line in sys.stdin:
        if line.strip() == "mark":
            for s in servers:
                s.clear_log()
            print("{}", flush=True)
        elif line.strip() == "stats":
            log = [r for s in servers for r in s.requests()]
            stats = {
                "first": min((r.time for r in log), default=None),
                "feeds": len({(r.host, r.path) for r in log}),
                "most_in_flight": max(s.max_in_flight() for s in servers),
            }
            print(json.dumps(stats), flush=True)
    for s in servers:
        s.stop()


class Server:
    """The farm server process and its command line."""

    def __init__(self, n: int, ports: int, entries: int) -> None:
        args = [PY, __file__, "_serve", str(n), str(ports), str(entries)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.urls: list[str] = self._read()["urls"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return out

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


# ------------------------------------------------------------------------------ one fleet


def _schema(url: str) -> str:
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return schema


def _drop(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _round(server: Server, fleet: Any, n: int, base: list[int], timeout: float) -> dict[str, Any]:
    """Wait until the daemons' logs count ``n`` more feeds polled than ``base``; the round's time."""
    while True:
        done = sum(d.polled() for d in fleet.daemons) - sum(base)
        if done >= n or time.monotonic() > timeout:
            end = time.monotonic()
            break
        if not all(d.alive for d in fleet.daemons):
            return {"error": "a daemon exited:\n" + "\n".join(d.log[-2000:] for d in fleet.daemons if not d.alive)}
        time.sleep(0.05)
    stats = server.ask("stats")
    shares = [d.polled() - b for d, b in zip(fleet.daemons, base, strict=True)]
    if done < n or stats["first"] is None:
        return {"error": f"round incomplete: {done} of {n} feeds polled", "shares": shares}
    return {"round": end - stats["first"], "shares": shares, "most_in_flight": stats["most_in_flight"]}


def measure(server: Server, url: str, daemons: int, round_timeout: float) -> dict[str, Any]:
    """One fleet of ``daemons`` on a fresh schema: its first and its steady round."""
    from ruamel.yaml import YAML
    from sqlalchemy import text

    from tests.support.fleet import Fleet

    shipped = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    for wl in shipped["watchlists"]:
        wl["notify"] = ["hook"]
    feeds = [{"name": f"f{i}", "url": u} for i, u in enumerate(server.urls)]
    settings = {
        "log_level": "INFO",
        "aliases": shipped.get("aliases") or {},
        "poll": {"interval": 3600, "jitter": 0, "tick": 0.5, "learn_cadence": False},
    }
    n = len(feeds)
    schema = _schema(url)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp), url, schema, feeds, shipped["watchlists"], "json://127.0.0.1:9/", settings)
        try:
            server.ask("mark")
            fleet.start(daemons)
            first = _round(server, fleet, n, [0] * daemons, time.monotonic() + round_timeout)
            if "error" in first:
                return first
            time.sleep(1.0)  # the last cycle's writes are done
            base = [d.polled() for d in fleet.daemons]
            server.ask("mark")
            with fleet.engine.begin() as conn:
                conn.execute(text("UPDATE feeds SET next_poll_at = :now"), {"now": dt.datetime.now(dt.UTC)})
            steady = _round(server, fleet, n, base, time.monotonic() + round_timeout)
            if "error" in steady:
                return steady
        finally:
            for d in fleet.daemons:
                d.stop(30)
            fleet.close()
            _drop(url, schema)
    return {"first": first, "steady": steady}


# ---------------------------------------------------------------------------- printing


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=3000)
    parser.add_argument("--ports", type=int, default=100, help="host:port keys the feeds are spread over")
    parser.add_argument("--entries", type=int, default=5, help="items per feed")
    parser.add_argument("--daemons", default="1,2,3", help="fleet sizes, comma-separated (the first is the baseline)")
    parser.add_argument("--runs", type=int, default=3, help="runs per fleet size (medians)")
    parser.add_argument("--round-timeout", type=float, default=300.0)
    parser.add_argument("--database", default=os.environ.get("MONITOR_TEST_POSTGRES_URL") or DEFAULT_DB)
    args = parser.parse_args()

    from monitor.storage.engine import normalise_url

    url = normalise_url(args.database)
    sizes = [int(x) for x in args.daemons.split(",")]
    print(
        f"{args.feeds} feeds x {args.entries} entries on {args.ports} host:port keys, answers held 50-200 ms; "
        f"daemons {args.daemons}, medians of {args.runs} runs",
        flush=True,
    )
    print(f"before: {_load()}", flush=True)
    server = Server(args.feeds, args.ports, args.entries)
    results: dict[int, list[dict[str, Any]]] = {k: [] for k in sizes}
    try:
        for run in range(args.runs):
            for k in sizes:  # interleaved, so a change in the machine's load touches every size alike
                r = measure(server, url, k, args.round_timeout)
                if "error" in r:
                    print(f"  run {run + 1}, {k} daemon(s): {r['error']}", flush=True)
                    continue
                results[k].append(r)
                f, s = r["first"], r["steady"]
                print(
                    f"  run {run + 1}, {k} daemon(s): first round {f['round']:.2f} s (shares {f['shares']}, "
                    f"most at once on one host:port {f['most_in_flight']}), steady round {s['round']:.2f} s "
                    f"(shares {s['shares']})",
                    flush=True,
                )
    finally:
        server.close()
    print(f"after: {_load()}")
    _table(results, sizes[0])


def _table(results: dict[int, list[dict[str, Any]]], baseline: int) -> None:
    med: dict[int, tuple[float, float]] = {}
    for k, rs in results.items():
        if rs:
            med[k] = (
                statistics.median(r["first"]["round"] for r in rs),
                statistics.median(r["steady"]["round"] for r in rs),
            )
    print()
    print(f"{'daemons':>8}{'first round':>14}{'speed-up':>10}{'steady round':>15}{'speed-up':>10}{'runs':>6}")
    base = med.get(baseline)
    for k, (first, steady) in med.items():
        up1 = f"{base[0] / first:.2f}" if base else "-"
        up2 = f"{base[1] / steady:.2f}" if base else "-"
        print(f"{k:>8}{first:>12.2f} s{up1:>10}{steady:>13.2f} s{up2:>10}{len(results[k]):>6}")


if __name__ == "__main__":
    main()
