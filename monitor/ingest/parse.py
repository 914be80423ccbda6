"""The feedparser boundary: fetched bytes in, a :class:`ParsedFeed` or a ParseError out.

:func:`parse_feed` is the only place that calls feedparser. It is a top-level function
whose inputs and outputs are plain picklable values, so it can run in another process.
:class:`ParsePool` is how the pipeline runs it: parsing is the expensive step of a
poll cycle (a process per core is how a second core helps), and feedparser can be
made to take minutes (a dense 10 MB feed, 200,000 nested elements), so every parse
runs under a deadline in a worker process that is killed and replaced when it is
overrun (``reason="parse_timeout"``); see the class for the rest of its guarantees.

How it talks to feedparser, and why:

* The body is passed as a :class:`io.BytesIO`, never as ``bytes`` or a URL: given a
  string, ``feedparser.parse`` first tries to *open it as a file name* (a body of
  ``b"/etc/passwd"`` would be read from disk) and fetches anything that looks like a URL,
  without a timeout.
* ``response_headers`` carry ``content-location`` (the feed URL without user-info, so
  that relative links resolve and no password ends up in a stored link) and
  ``content-type``. Without a Content-Type, ``application/xml`` is assumed: feedparser
  would otherwise fall back to ISO-8859-1 for documents without an XML declaration,
  where XML says UTF-8 (the Le Monde fixture is such a file), and flag every such
  feed as bozo.
* ``sanitize_html=False, resolve_relative_uris=False``: both only touch HTML *inside*
  summaries and content, which :func:`monitor.ingest.entries.html_to_text` turns into plain text
  anyway (dropping ``<script>``/``<style>``); the entry ``<link>`` is still resolved
  against ``xml:base`` and the feed URL (``tests/test_parse.py`` checks both relative-link
  fixtures). It makes parsing about a third faster.
* Undeclared encodings: feedparser asks ``chardet`` (when installed) before its own
  utf-8 / windows-1252 fallbacks; that is what decodes an undeclared KOI8-R feed.
  ``charset_normalizer`` is not consulted by feedparser (and guesses cp1250/cp1257 for
  our undeclared Latin-1 fixtures, so it would not be an improvement).

Defences before feedparser sees the bytes:

* Entity expansion: feedparser drops nested entity definitions (the billion laughs),
  but a single big entity referenced many times still expands in full (a 300 KB crafted
  feed becomes 2 GB of titles). :func:`_check_entity_expansion` computes what the
  declared entities would expand to and refuses more than :data:`MAX_ENTITY_EXPANSION`
  characters (``reason="entity_expansion"``). It also refuses more than
  :data:`MAX_ENTITY_DECLARATIONS` declarations, which feedparser handles in quadratic time.
* Character references outside Unicode (``&#x110000;``) or to lone surrogates
  (``&#55296;``) make feedparser raise instead of flagging the feed (feedparser #599).
  They are rewritten first: a surrogate pair written as two references (a common
  JavaScript-made emoji) becomes the real character, anything else U+FFFD. One bad
  character should not cost a feed all of its entries.

Judging the result: ``bozo`` alone means little. An encoding override or a non-XML
Content-Type with entries is harmless (recorded in ``warnings``); a recoverable XML
error with entries is a warning too (feedparser's loose parser got them). Errors are:
``empty`` (no bytes), ``not_a_feed`` (no RSS/Atom/RDF root and no entries: an HTML page,
JSON, random bytes), ``malformed`` (a feed root but broken XML and no entry recovered),
``entity_expansion`` and ``parser_crash`` (feedparser raised). A well-formed feed with
zero entries is not an error.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from monitor.errors import ParseError
from monitor.ingest.entries import Entry, html_to_text, language_code, normalise_entry

__all__ = [
    "MAX_ENTITY_DECLARATIONS",
    "MAX_ENTITY_EXPANSION",
    "ParseJob",
    "ParsePool",
    "ParsedFeed",
    "parse_feed",
]

#: Most characters that declared XML entities may add to a document when expanded.
MAX_ENTITY_EXPANSION = 1_000_000
#: Most entity declarations a document may carry: feedparser's DOCTYPE handling takes
#: time quadratic in their number (40,000 tiny declarations cost 6 s), and no real feed
#: declares more than a few (an inlined XHTML entity set is about 250).
MAX_ENTITY_DECLARATIONS = 1_000


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed: its own metadata and its normalised, de-duplicated entries."""

    title: str | None
    link: str | None
    language: str | None
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]  # harmless oddities, worth a debug log line


# Bozo exceptions that say nothing about the document's structure.
_HARMLESS = ("CharacterEncodingOverride", "NonXMLContentType")

_HEAD_END = re.compile(rb"<\w")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+([^\s%\"'>]+)\s+\"([^\"]*)\"")
_ENTITY_REF = re.compile(rb"&([^\s&;<>\"']{1,200});")
_SUSPICIOUS_CHARREF = re.compile(rb"&#0*[0-9]{5,};|&#[xX]0*(?:[dD][89a-fA-F][0-9a-fA-F]{2}|[0-9a-fA-F]{5,});")
_CHARREF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")
_REPLACEMENT = b"&#xFFFD;"
# Byte-order marks and "<?" in encodings that are not ASCII-compatible.
_WIDE_ENCODINGS = (
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (b"\x00\x00\x00\x3c", "utf-32-be"),
    (b"\x3c\x00\x00\x00", "utf-32-le"),
    (b"\x00\x3c\x00\x3f", "utf-16-be"),
    (b"\x3c\x00\x3f\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),
)


def _ascii_compatible(body: bytes) -> bytes:
    """``body`` as UTF-8 if it is in a wide encoding (so byte regexes can read its
    markup), else ``body`` itself."""
    for marker, encoding in _WIDE_ENCODINGS:
        if body.startswith(marker):
            return body.decode(encoding, "replace").encode("utf-8")
    return body


def _check_entity_expansion(body: bytes) -> None:
    """Refuse documents whose declared entities would expand beyond the budget.

    Mirrors what feedparser keeps: entity declarations in the prolog with a
    double-quoted value (anything with ``&`` in it, i.e. nesting, it drops itself).
    """
    text = _ascii_compatible(body)
    head_end = _HEAD_END.search(text)
    head = text[: head_end.start()] if head_end else text
    if b"<!ENTITY" not in head:
        return
    declarations = head.count(b"<!ENTITY")
    if declarations > MAX_ENTITY_DECLARATIONS:
        raise ParseError(
            f"the feed declares {declarations:,} XML entities (limit {MAX_ENTITY_DECLARATIONS:,}); "
            "refusing to parse it",
            reason="entity_expansion",
        )
    sizes = {name: len(value) for name, value in _ENTITY_DECL.findall(head) if b"&" not in value}
    if not sizes:
        return
    uses = Counter(_ENTITY_REF.findall(text, head_end.start() if head_end else len(text)))
    expansion = sum(size * uses[name] for name, size in sizes.items())
    if expansion > MAX_ENTITY_EXPANSION:
        raise ParseError(
            f"the feed declares XML entities that would expand to {expansion:,} characters "
            f"(limit {MAX_ENTITY_EXPANSION:,}); refusing to parse it",
            reason="entity_expansion",
        )


def _charref_value(ref: bytes) -> int:
    digits = ref.lstrip(b"xX").lstrip(b"0")
    if len(digits) > 8:  # beyond Unicode whatever the digits (and int() refuses 4,300+)
        return 0x110000
    return int(ref[1:] or b"0", 16) if ref[:1] in (b"x", b"X") else int(ref or b"0")


def _repair_charrefs(body: bytes) -> bytes:
    """Rewrite character references that would make feedparser raise (see module doc)."""
    if not _SUSPICIOUS_CHARREF.search(body):
        return body
    merged_at = -1  # start of a low-surrogate reference already merged into its pair

    def repair(match: re.Match[bytes]) -> bytes:
        nonlocal merged_at
        if match.start() == merged_at:
            return b""
        value = _charref_value(match.group(1))
        if 0xD800 <= value <= 0xDBFF:
            low = _CHARREF.match(body, match.end())
            if low and 0xDC00 <= (low_value := _charref_value(low.group(1))) <= 0xDFFF:
                merged_at = low.start()
                return b"&#x%X;" % (0x10000 + ((value - 0xD800) << 10) + (low_value - 0xDC00))
            return _REPLACEMENT
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return _REPLACEMENT
        return match.group(0)

    return _CHARREF.sub(repair, body)


def _without_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(exc: object) -> str:
    return f"{type(exc).__name__}: {exc}"


def _not_a_feed_message(body: bytes, content_type: str | None) -> str:
    mime = (content_type or "").split(";")[0].strip().lower()
    start = _ascii_compatible(body[:4096]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    html_like = b"<html" in start or start.startswith(b"<!doctype html")
    if mime in ("text/html", "application/xhtml+xml") or html_like:
        return "the server returned an HTML page, not a feed (is the feed URL right?)"
    if mime.endswith("json") or start[:1] in (b"{", b"["):
        return "the server returned JSON, not an RSS, Atom or RDF feed (JSON Feed is not supported)"
    return "the response is not an RSS, Atom or RDF feed (no feed element found)"


def _completeness(entry: Entry) -> tuple[bool, bool, bool, int]:
    return (entry.link is not None, bool(entry.title), entry.date_from_feed, len(entry.summary))


def _collapse_duplicates(entries: list[Entry]) -> tuple[list[Entry], int]:
    """One entry per ``story_key``, the most complete of its copies (the first on a tie),
    at the position of the first copy. Collapsing on ``story_key`` rather than on the
    raw GUID matters: some feeds give every item the same GUID (the site's home page)
    while each item has its own link, and those are different stories."""
    chosen: dict[str, Entry] = {}
    for entry in entries:
        kept = chosen.get(entry.story_key)
        if kept is None or _completeness(entry) > _completeness(kept):
            chosen[entry.story_key] = entry
    return list(chosen.values()), len(entries) - len(chosen)


def _feed_text(feed: Mapping[str, Any], key: str) -> str | None:
    value = feed.get(key)
    if not isinstance(value, str):
        return None
    detail = feed.get(f"{key}_detail")
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    text = html_to_text(value) if kind in ("text/html", "application/xhtml+xml") else value
    return " ".join(text.split()) or None


def _http_link(value: object, base: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        link = urljoin(base, value.strip())
        scheme = urlsplit(link).scheme
    except ValueError:
        return None
    return link if scheme in ("http", "https") else None


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    default_language: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse fetched feed bytes into normalised entries (see the module docstring).

    ``url`` is the final URL the body came from (after redirects): relative links
    resolve against it. ``content_type`` is the response's Content-Type (None if
    absent; ``headers["content-type"]`` is used then). ``headers`` may also carry
    ``Content-Language``, used when the feed declares no language of its own.
    ``fetched_at`` (timezone-aware) stands in for missing or future entry dates.

    Raises :class:`monitor.errors.ParseError` with ``reason`` one of ``empty``,
    ``not_a_feed``, ``malformed``, ``entity_expansion``, ``parser_crash``; and
    ValueError for a naive ``fetched_at`` (a programming error, not a feed's fault).
    """
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise ValueError("fetched_at must be timezone-aware")
    lowered = {key.lower(): value for key, value in (headers or {}).items()}
    content_type = content_type or lowered.get("content-type")
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n\x00"):
        raise ParseError("the server returned an empty body, not a feed", reason="empty")

    _check_entity_expansion(body)
    repaired = _repair_charrefs(body)
    base = _without_userinfo(url)
    # Imported here: the daemon's own process only hands bytes to the workers, and
    # feedparser (with chardet) is 12 MB it does not need.
    import feedparser

    try:
        result = feedparser.parse(
            io.BytesIO(repaired),
            response_headers={"content-location": base, "content-type": content_type or "application/xml"},
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser raises re.error, ValueError, RecursionError...
        raise ParseError(
            f"the feed parser failed on this document ({type(exc).__name__}: {exc})", reason="parser_crash"
        ) from exc

    version = result.get("version") or ""
    raw_entries = result.get("entries") or []
    bozo_exc = result.get("bozo_exception") if result.get("bozo") else None
    if not version and not raw_entries:
        raise ParseError(_not_a_feed_message(body, content_type), reason="not_a_feed")

    feed = result.get("feed") or {}
    feed_language = language_code(feed.get("language")) or language_code(lowered.get("content-language"))
    entries: list[Entry] = []
    for raw in raw_entries:
        entry = normalise_entry(
            raw,
            feed_url=base,
            fetched_at=fetched_at,
            default_language=default_language,
            feed_language=feed_language,
        )
        if entry is not None:
            entries.append(entry)
    structural = bozo_exc is not None and type(bozo_exc).__name__ not in _HARMLESS
    if structural and not entries:
        raise ParseError(
            f"the feed is not well-formed XML and no entry could be recovered ({_describe(bozo_exc)})",
            reason="malformed",
        )

    warnings: list[str] = []
    if bozo_exc is not None:
        warnings.append(_describe(bozo_exc))
    if repaired is not body:
        warnings.append("invalid character references replaced")
    dropped = len(raw_entries) - len(entries)
    if dropped:
        warnings.append(f"{dropped} empty entries dropped (no title, summary or link)")
    entries, collapsed = _collapse_duplicates(entries)
    if collapsed:
        warnings.append(f"{collapsed} duplicate entries collapsed")

    return ParsedFeed(
        title=_feed_text(feed, "title"),
        link=_http_link(feed.get("link"), base),
        language=feed_language or language_code(default_language),
        entries=tuple(entries),
        warnings=tuple(warnings),
    )


# ------------------------------------------------------------ parsing under a deadline

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
            body = reader.recv_bytes()
        except (EOFError, OSError):
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


_WORKER_CODE = "from monitor.ingest.parse import _worker_main; _worker_main()"
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
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
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

    def send(self, job: ParseJob) -> None:
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
    future: Future[ParsedFeed]


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
    * **Lean workers.** Each worker is a fresh interpreter that imports only this
      module (feedparser included): about 25 MB, started on first use (a few tenths of
      a second) and replaced the same way.

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
        self._jobs: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._room = threading.Semaphore(self.backlog)
        # Big jobs run alone: a big job takes the write side, every other job a read side.
        self._gate = _SharedExclusive()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._live: dict[int, _Worker] = {}  # slot -> its current worker
        self._closed = False
        self.restarts = 0  # workers replaced after a timeout, a memory overrun or a crash

    def warm(self) -> None:
        """Start every worker now, in the background (a daemon's first cycle then does
        not wait the fifth of a second an interpreter takes to import feedparser)."""
        with self._lock:
            while not self._closed and len(self._threads) < self.workers:
                self._add_slot(warm=True)

    def submit(self, job: ParseJob) -> Future[ParsedFeed]:
        """Queue ``job``; blocks while the pool holds ``backlog`` jobs already."""
        while not self._room.acquire(timeout=0.5):
            if self._closed:
                break
        future: Future[ParsedFeed] = Future()
        with self._lock:
            if self._closed:
                self._room.release()
                future.set_exception(ParseError("the parser pool is closed", reason="cancelled"))
                return future
            if len(self._threads) < self.workers:
                self._add_slot(warm=False)
        future.add_done_callback(lambda _: self._room.release())
        self._jobs.put(_Task(job, future))
        return future

    def _add_slot(self, *, warm: bool) -> None:
        slot = len(self._threads)
        thread = threading.Thread(
            target=self._run, args=(slot, warm), name=f"news-monitor-parse-{slot}", daemon=True
        )
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
                log.warning("parser worker did not start: %s", exc)
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
        worker = _Worker(self)
        with self._lock:
            self._live[slot] = worker
        return worker

    def _stopped(self, worker: _Worker, error: ParseError) -> tuple[None, ParseError]:
        worker.kill()
        self.restarts += 1
        if self._closed:
            return None, ParseError("the parser pool was closed", reason="cancelled")
        return None, error

    def _one(
        self, slot: int, worker: _Worker | None, task: _Task
    ) -> tuple[_Worker | None, ParsedFeed | ParseError]:
        """Run one job; returns the worker to use next (None: start a new one)."""
        job = task.job
        try:
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.kill()
                worker = self._start(slot)
            try:
                worker.send(job)
            except (OSError, ValueError):  # it died while idle: one fresh try
                worker.kill()
                worker = self._start(slot)
                worker.send(job)
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
