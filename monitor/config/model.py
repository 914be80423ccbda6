"""Loading and validating ``config.yaml``.

The file is read with ruamel.yaml's round-trip loader because it remembers where every
key and item sits: a pydantic validation error is turned back into *file:line: field*,
which is what a user needs to fix a typo at 3 a.m. (and the same loader later lets the
CLI edit watchlists in place without losing comments).

``${VAR}`` is replaced from the environment before validation in the fields that carry
secrets or the user's own addresses (:data:`EXPANDED_FIELDS`: ``database``, ``web.token``,
the targets, the feed URLs), so secrets live in the environment (systemd
``EnvironmentFile=``), never in the file; a missing variable is an error naming the
variable and the line. ``$${`` writes a literal ``${`` there. Every other string is
taken literally: a query or a description never reads the environment.

Durations accept ``30s``, ``10m``, ``2h``, ``1d`` or a number of seconds; sizes accept
``512KB``, ``10MB`` or a number of bytes.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from monitor.clustering.decide import Settings as ClusterRules
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.ingest.entries import language_code
from monitor.ingest.fetch import FetchSettings
from monitor.ingest.schedule import PollPolicy

DEFAULT_CONFIG = "config.yaml"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
#: Database URL schemes the store can open (psycopg 3 is the PostgreSQL driver shipped).
_DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "postgresql+psycopg"})
#: Longest duration and largest size the config accepts: every duration ends up in a
#: ``datetime.timedelta`` (which overflows near 2.7 million years) and every size in a
#: buffer, so both are bounded far above any sensible value.
MAX_DURATION = 366 * 86400.0
MAX_SIZE = 1024**3
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|(\$\{)")


def parse_duration(value: Any) -> float:
    """Seconds from ``30s`` / ``10m`` / ``2h`` / ``1d`` / a bare number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 10m, 2h, 1d)")
        seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    else:
        raise ValueError("expected a duration such as 30s, 10m, 2h")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("a duration cannot be negative or NaN")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than the longest duration accepted (366d)")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from ``512KB`` / ``10MB`` / a bare number."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MB")
    if isinstance(value, int):
        size: float = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a size (use e.g. 512KB, 10MB)")
        size = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    else:
        raise ValueError("expected a size such as 10MB")
    if size <= 0:
        raise ValueError("a size must be positive")
    if size > MAX_SIZE:
        raise ValueError(f"{value!r} is larger than the largest size accepted (1GiB)")
    return int(size)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid name (letters, digits, '-', '_', '.'; at most 64 characters)")
    return value


Name = Annotated[str, BeforeValidator(lambda v: _check_name(str(v)) if isinstance(v, str) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The fetcher's limits and the scheduling policy are defined once, by the values that use
# them; the config's defaults are read from there.
_FETCH = FetchSettings()
_POLICY = PollPolicy()
_CLUSTER = ClusterRules()


class PollSettings(_Model):
    """How feeds are polled. Every value can be overridden per feed where it makes sense."""

    interval: Duration = 600.0
    jitter: Duration = _POLICY.jitter
    timeout: Duration = _FETCH.timeout
    deadline: Duration = _FETCH.deadline
    max_bytes: Size = _FETCH.max_bytes
    concurrency: int = Field(default=_FETCH.concurrency, ge=1, le=256)
    per_host: int = Field(default=_FETCH.per_host, ge=1, le=32)
    catchup_new_feeds: bool = True
    backoff_max: Duration = _POLICY.backoff_max
    tick: Duration = 5.0
    parse_workers: int = Field(default=0, ge=0, le=64)
    # A parse that takes longer is stopped (its worker process is killed and replaced)
    # and the feed fails with reason parse_timeout: a crafted feed must not stall a cycle.
    parse_timeout: Duration = _POLICY.parse_timeout
    # Learned cadence: a feed that publishes rarely is polled less often than `interval`,
    # but at least every `max_interval`; `learn_cadence: false` (here or per feed) turns it off.
    learn_cadence: bool = _POLICY.learn_cadence
    max_interval: Duration = _POLICY.max_interval
    # Feeds taken in one claim (0: twice `concurrency`, at least 16). Small claims share
    # the work between daemons; more are claimed as the ones in hand are fetched.
    claim: int = Field(default=0, ge=0, le=10_000)

    def claim_size(self) -> int:
        return self.claim or max(16, 2 * self.concurrency)

    @field_validator("interval")
    @classmethod
    def _polite(cls, value: float) -> float:
        if value < 10:
            raise ValueError("must be at least 10s (be polite to publishers)")
        return value

    @field_validator("parse_timeout")
    @classmethod
    def _parse_timeout(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("must be at least 0.1s")
        return value

    @model_validator(mode="after")
    def _sane(self) -> PollSettings:
        if self.deadline < self.timeout:
            raise ValueError("poll.deadline must be at least poll.timeout")
        return self


class ClusterSettings(_Model):
    """How stories of one event are grouped so that the event alerts once (the defaults
    are the ones measured on the labelled set; see monitor/clustering/decide.py)."""

    enabled: bool = True
    # A story joins a cluster whose first story was published at most this far from it.
    window: Duration = _CLUSTER.window.total_seconds()
    # Least score to join a cluster: higher merges less (more repeated alerts), lower
    # merges more (risks one alert for two events).
    threshold: float = Field(default=_CLUSTER.threshold, gt=0, le=1)
    # Features beyond the shared actors two tellings must share ...
    min_evidence: int = Field(default=_CLUSTER.min_evidence, ge=1, le=20)
    # ... unless they share one and score at least this much.
    strong: float = Field(default=_CLUSTER.strong, gt=0, le=1)
    # Two stories' score halves for every half_life between their publications.
    half_life: Duration = _CLUSTER.half_life.total_seconds()

    @field_validator("window", "half_life")
    @classmethod
    def _hours(cls, value: float) -> float:
        if value < 3600:
            raise ValueError("must be at least 1h")
        return value

    def rules(self) -> ClusterRules:
        return ClusterRules(
            window=dt.timedelta(seconds=self.window),
            threshold=self.threshold,
            min_evidence=self.min_evidence,
            strong=self.strong,
            half_life=dt.timedelta(seconds=self.half_life),
        )


class DeliverySettings(_Model):
    """How the outbox is drained: retries back off exponentially up to ``give_up_after``."""

    retry_base: Duration = 30.0
    retry_max: Duration = 3600.0
    give_up_after: Duration = 172800.0
    lease: Duration | None = None  # no longer used: leases are `workers.lease`, renewed
    timeout: Duration = 30.0
    interval: Duration = 5.0
    # Alerts taken in one claim: what can be sent well within a lease.
    batch: int = Field(default=20, ge=1, le=10_000)


class WorkerSettings(_Model):
    """How the processes sharing a database prove they are alive (see storage/workers.py)."""

    # How often a daemon stamps its heartbeat and renews the leases of what it holds.
    heartbeat: Duration = 2.0
    # A claim runs out this long after its holder's last heartbeat: then another daemon,
    # on any host, takes the work over.
    lease: Duration = 15.0

    @model_validator(mode="after")
    def _sane(self) -> WorkerSettings:
        if self.heartbeat < 0.1:
            raise ValueError("workers.heartbeat must be at least 0.1s")
        if self.lease < 3 * self.heartbeat:
            raise ValueError("workers.lease must be at least 3 times workers.heartbeat")
        return self


class FeedConfig(_Model):
    name: Name
    url: str
    interval: Duration | None = None
    language: str | None = None
    enabled: bool = True
    learn_cadence: bool | None = None  # None: poll.learn_cadence

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value, re.IGNORECASE):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and language_code(value) is None:
            raise ValueError(f"{value!r} is not a language tag (use e.g. en, fr, ru, uk, ko, de, en-GB)")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float | None) -> float | None:
        if value is not None and value < 10:
            raise ValueError("a feed's interval must be at least 10s")
        return value


def _check_tz(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use e.g. Europe/Paris)") from exc
    return value


TimeZone = Annotated[str, BeforeValidator(lambda v: _check_tz(v) if isinstance(v, str) else v)]
_QUIET_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")
_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(.+?)\s*$")


def parse_quiet_hours(value: Any) -> tuple[dt.time, dt.time]:
    """``"22:00-07:00"`` -> (22:00, 07:00); the window may cross midnight."""
    m = _QUIET_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a time window (use e.g. 22:00-07:00)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    try:
        start, end = dt.time(h1, m1), dt.time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    if start == end:
        raise ValueError(f"{value!r} is an empty window")
    return start, end


def parse_rate(value: Any) -> tuple[int, float]:
    """``"10/10m"`` or ``"10 per 10m"`` -> (10, 600.0)."""
    m = _RATE_RE.match(str(value))
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"{value!r} is not a rate limit (use e.g. 10/10m: at most 10 messages per 10 minutes)")
    return int(m.group(1)), parse_duration(m.group(2))


class TargetConfig(_Model):
    """A target: an Apprise URL, with optional quiet hours and rate limit.

    A plain string in the config is the URL alone.
    """

    url: str
    quiet_hours: str | None = None  # "22:00-07:00", in `timezone` (default: the config's)
    timezone: TimeZone | None = None
    rate_limit: str | None = None  # "10/10m"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value


def _target(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


class EscalateSettings(_Model):
    """One follow-up per event when its coverage surges: ``outlets`` distinct feeds told
    it within ``within`` of its first story."""

    outlets: int = Field(ge=2, le=1000)
    within: Duration

    @field_validator("within")
    @classmethod
    def _minutes(cls, value: float) -> float:
        if value < 600:
            raise ValueError("must be at least 10m")
        return value

    def rule(self) -> tuple[int, dt.timedelta]:
        """(outlets, within) as the ingest decision takes them."""
        return self.outlets, dt.timedelta(seconds=self.within)


class WatchlistConfig(_Model):
    name: Name
    query: str
    notify: list[str] = Field(default_factory=list)
    enabled: bool = True
    stem: list[Literal["en", "fr", "ru", "uk"]] = Field(default_factory=list)
    description: str | None = None
    mode: Literal["instant", "digest"] = "instant"
    schedule: str = "0 8 * * *"  # digest time, crontab (minute hour day month weekday)
    timezone: TimeZone | None = None  # of the schedule (default: the config's)
    urgent: bool = False  # bypasses the targets' quiet hours
    escalate: EscalateSettings | None = None  # one "now reported by N outlets" follow-up

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from monitor.delivery.routing import validate_schedule

        validate_schedule(value)
        return value


class HealthSettings(_Model):
    """Feed-health alerts: one when a feed has failed for ``after``, one when it recovers."""

    notify: list[str] = Field(default_factory=list)
    after: Duration = 21600.0


def parse_retention(value: Any) -> float:
    """A retention duration: ``never`` (or ``0``) keeps for ever, stored as 0."""
    if isinstance(value, str) and value.strip().lower() in ("never", "off"):
        return 0.0
    return parse_duration(value)


Retention = Annotated[float, BeforeValidator(parse_retention)]


class RetentionSettings(_Model):
    """How long stored rows are kept by the daily prune (``never`` or ``0``: for ever).

    Whatever these say, a prune keeps the stories of clusters still open (first seen
    within twice ``cluster.window``), of alerts still to deliver, and delivery rows within
    the longest rate limit; see monitor/storage/retention.py.
    """

    stories: Retention = 90 * 86400.0
    deliveries: Retention = 30 * 86400.0
    # sent or given-up alerts of no story (feed health); a story's go with it
    outbox: Retention = 30 * 86400.0
    # the dedupe keys of pruned stories, so that a feed still listing one does not alert it again
    keys: Retention = 366 * 86400.0


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) -> (host, port); raises ValueError."""
    m = re.match(r"^\s*(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})\s*$", value)
    if not m or int(m.group(3)) > 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:8080 or [::1]:8080)")
    return m.group(1) or m.group(2), int(m.group(3))


class WebSettings(_Model):
    """The web interface inside the daemon (``web: {listen: 127.0.0.1:8080}``).

    Off unless ``listen`` is set. Bound to a loopback address it needs no token (only
    this machine can reach it); bound anywhere else a ``token`` is required, since the
    page can rewrite watchlists.
    """

    listen: str | None = None
    token: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.listen and split_listen(self.listen)[0] not in _LOOPBACK_HOSTS and not self.token:
            raise ValueError(
                "web.token is required when web.listen is not a loopback address "
                "(set token: ${WEB_TOKEN} and export WEB_TOKEN)"
            )
        if self.token is not None and len(self.token) < 12:
            raise ValueError("web.token must be at least 12 characters")
        return self


class Config(_Model):
    """The whole validated configuration."""

    database: str = "sqlite:///data/monitor.db"  # relative: see resolve_database_url
    timezone: str = "UTC"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    poll: PollSettings = PollSettings()
    delivery: DeliverySettings = DeliverySettings()
    workers: WorkerSettings = WorkerSettings()
    feeds: list[FeedConfig] = Field(default_factory=list)
    targets: dict[Name, Annotated[TargetConfig, BeforeValidator(_target)]] = Field(default_factory=dict)
    health: HealthSettings = HealthSettings()
    cluster: ClusterSettings = ClusterSettings()
    templates: dict[str, str] = Field(default_factory=dict)  # template name -> Jinja2 source
    aliases: dict[Name, str] = Field(default_factory=dict)
    watchlists: list[WatchlistConfig] = Field(default_factory=list)
    web: WebSettings = WebSettings()
    retention: RetentionSettings = RetentionSettings()

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in _DATABASE_SCHEMES:
            raise ValueError(
                f"unsupported database {value.split('://', 1)[0]!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use e.g. Europe/Paris)") from exc
        return value

    def warnings(self) -> list[str]:
        """What makes a valid config do nothing useful (no feeds, watchlists or targets)."""
        out = []
        if not any(f.enabled for f in self.feeds):
            out.append("no enabled feed: nothing will be polled (news-monitor feeds add URL)")
        if not any(w.enabled for w in self.watchlists):
            out.append("no enabled watchlist: nothing will match (news-monitor watchlist add NAME ...)")
        if not self.targets:
            out.append("no target: nothing will be sent (add an e-mail or Slack URL under targets:)")
        if self.delivery.lease is not None:
            out.append("delivery.lease is no longer used: leases last workers.lease past each heartbeat")
        return out

    def poll_policy(self) -> PollPolicy:
        """The poll cycle's policy (``poll:`` and each feed's ``learn_cadence``)."""
        poll = self.poll
        default = poll.learn_cadence
        fixed = frozenset(f.name for f in self.feeds if not (default if f.learn_cadence is None else f.learn_cadence))
        return PollPolicy(
            jitter=poll.jitter,
            backoff_max=poll.backoff_max,
            max_interval=poll.max_interval,
            learn_cadence=default or len(fixed) < len(self.feeds),
            fixed_feeds=fixed,
            parse_timeout=poll.parse_timeout,
        )

    @property
    def target_urls(self) -> dict[str, str]:
        return {name: t.url for name, t in self.targets.items()}

    def feed(self, name: str) -> FeedConfig:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(name)

    def watchlist(self, name: str) -> WatchlistConfig:
        for wl in self.watchlists:
            if wl.name == name:
                return wl
        raise KeyError(name)


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path
    database_url: str  # relative SQLite paths made absolute (resolve_database_url)

    def line_of(self, *field: str | int) -> int | None:
        """Line of a field in the file, for messages that point back at it."""
        return _line_of(_load_yaml_tree(self.path.read_text(encoding="utf-8")), tuple(field))


# --- the loader -------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


#: Largest config file read, and most values in it once YAML aliases (``*name``) are
#: expanded: an alias costs nothing to parse but is copied when the tree becomes plain
#: values, so 442 bytes of nested aliases ("billion laughs") ran for minutes.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Something that may be a YAML anchor (``&name`` after a space, a bracket, a comma or the
# start of a line); an ``&`` inside a URL's query string is not.
_ANCHOR_RE = re.compile(r"(?:^|[\s\[{,:-])&[^\s\[\]{},]", re.MULTILINE)
MAX_YAML_VALUES = 200_000


def _check_yaml_size(text: str, file: str) -> None:
    """Refuse, from the parser's events and before building anything, a file that would
    expand to more than :data:`MAX_YAML_VALUES` values."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB", file=file)
    if not _ANCHOR_RE.search(text):
        return  # no anchor, so no alias: the scan would double the parse of a large file
    sizes: dict[str, int] = {}  # anchor -> values in its node, aliases expanded
    stack: list[tuple[str | None, int]] = [(None, 0)]
    for event in _yaml().parse(text):
        if isinstance(event, SequenceStartEvent | MappingStartEvent):
            stack.append((event.anchor, 1))
            continue
        if isinstance(event, SequenceEndEvent | MappingEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, AliasEvent):
            anchor, size = None, sizes.get(event.anchor or "", 1)
        else:
            continue
        if anchor:
            sizes[anchor] = size
        parent_anchor, parent_size = stack[-1]
        stack[-1] = (parent_anchor, parent_size + size)
        if parent_size + size > MAX_YAML_VALUES:
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            raise ConfigError(
                f"the file expands to more than {MAX_YAML_VALUES:,} values (YAML aliases)",
                file=file,
                line=line,
                hint="repeat the values instead of nesting *aliases of anchors",
            )


def _load_yaml_tree(text: str) -> Any:
    return _yaml().load(text)


#: ruamel's safe loader runs on libyaml (``ruamel.yaml.clib``, a dependency on CPython).
_HAS_LIBYAML = getattr(YAML(typ="safe", pure=False).Parser, "__name__", "") == "CParser"


def _line_of(tree: Any, loc: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    node = tree
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _field_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


#: Where ``${VAR}`` is expanded: the fields that carry secrets or point at the user's own
#: infrastructure. Everything else (queries, names, descriptions, templates) is taken
#: literally, so text that reaches the file from a web form, OPML or a feed can never
#: read the environment; tools that write a feed URL store ``${`` escaped as ``$${``.
EXPANDED_FIELDS = ("database", "web.token", "targets.<name>", "targets.<name>.url", "feeds[].url")
#: Of those, the ones only sending needs: a command that sends nothing may leave them unset.
SENDING_FIELDS = ("web.token", "targets.<name>", "targets.<name>.url")


def _expanded_locations(tree: dict[Any, Any]) -> Iterator[tuple[Any, str | int, tuple[str | int, ...], bool]]:
    """(container, key, loc, only_for_sending) of every string that ``${VAR}`` may fill.

    ``tree`` is the round-trip tree or the plain one of the fast path (:func:`parse_config`)."""
    if isinstance(tree.get("database"), str):
        yield tree, "database", ("database",), False
    web = tree.get("web")
    if isinstance(web, dict) and isinstance(web.get("token"), str):
        yield web, "token", ("web", "token"), True
    targets = tree.get("targets")
    if isinstance(targets, dict):
        for name, value in targets.items():
            if isinstance(value, str):
                yield targets, name, ("targets", name), True
            elif isinstance(value, dict) and isinstance(value.get("url"), str):
                yield value, "url", ("targets", name, "url"), True
    feeds = tree.get("feeds")
    if isinstance(feeds, list):
        for i, feed in enumerate(feeds):
            if isinstance(feed, dict) and isinstance(feed.get("url"), str):
                yield feed, "url", ("feeds", i, "url"), False


def _expand_env(
    tree: dict[Any, Any], env: Mapping[str, str], *, for_sending: bool = True
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Replace ``${VAR}`` in place in the expanded fields; yield (loc, name) of missing variables.

    With ``for_sending=False`` a missing variable of a field only sending needs is left
    as written, so commands that send nothing work without the service's secrets."""
    for container, key, loc, sending_only in _expanded_locations(tree):
        new, missing = _substitute(container[key], env)
        if missing and sending_only and not for_sending:
            continue
        for name in missing:
            yield loc, name
        container[key] = new


def escape_env(text: str) -> str:
    """``text`` as it must be written into an expanded field to be read back literally."""
    return text.replace("${", "$${")


def _substitute(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        if m.group(2):  # "${" that starts no ${NAME}: a typo that would be sent as it is
            missing.append("${")
            return m.group(0)
        name = m.group(1)
        if name not in env:
            missing.append(name)
            return m.group(0)
        return env[name]

    return _ENV_RE.sub(repl, value), missing


def _plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dicts/lists/str for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def _duplicates(tree: Any, file: str) -> None:
    """Duplicate feed names/URLs and watchlist names are errors, pointed at the second one."""
    for section, keys in (("feeds", ("name", "url")), ("watchlists", ("name",))):
        items = tree.get(section) if isinstance(tree, dict) else None
        if not isinstance(items, list):
            continue
        for key in keys:
            seen: dict[str, int] = {}
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get(key), str):
                    continue
                value = str(item[key]).strip()
                if key == "url":
                    value = value.rstrip("/").lower()
                if value in seen:
                    raise ConfigError(
                        f"duplicate {section[:-1]} {key} {item[key]!r}",
                        file=file,
                        line=_line_of(tree, (section, i, key)),
                        field=f"{section}[{i}].{key}",
                        hint=f"already used by {section}[{seen[value]}]",
                    )
                seen[value] = i


def _cross_checks(config: Config, tree: Any, file: str) -> None:
    """Checks that need the whole config: target names, query syntax, aliases."""
    from monitor.matching.matcher import (  # the pure matcher; imported late to keep start-up light
        Matcher,
        WatchlistQuery,
    )
    from monitor.matching.query import validate_aliases

    for i, wl in enumerate(config.watchlists):
        if wl.enabled and not wl.notify:
            raise ConfigError(
                "a watchlist needs at least one target to notify",
                file=file,
                line=_line_of(tree, ("watchlists", i)),
                field=f"watchlists[{i}].notify",
                hint=f"known targets: {', '.join(config.targets) or 'none defined'}",
            )
        for j, target in enumerate(wl.notify):
            if target not in config.targets:
                raise ConfigError(
                    f"unknown target {target!r}",
                    file=file,
                    line=_line_of(tree, ("watchlists", i, "notify", j)),
                    field=f"watchlists[{i}].notify[{j}]",
                    hint=f"known targets: {', '.join(config.targets) or 'none defined'}",
                )
    for j, target in enumerate(config.health.notify):
        if target not in config.targets:
            raise ConfigError(
                f"unknown target {target!r}",
                file=file,
                line=_line_of(tree, ("health", "notify", j)),
                field=f"health.notify[{j}]",
                hint=f"known targets: {', '.join(config.targets) or 'none defined'}",
            )
    if config.templates:
        from monitor.delivery.render import TEMPLATE_NAMES, Renderer

        for name in config.templates:
            if name not in TEMPLATE_NAMES:
                raise ConfigError(
                    f"unknown template {name!r}",
                    file=file,
                    line=_line_of(tree, ("templates", name)),
                    field=f"templates.{name}",
                    hint=f"templates are: {', '.join(TEMPLATE_NAMES)}",
                )
        try:
            Renderer(timezone=config.timezone, overrides=config.templates)
        except ConfigError as exc:
            name = (exc.field or "").removeprefix("templates.")
            raise ConfigError(
                exc.message, file=file, line=_line_of(tree, ("templates", name)), field=exc.field, hint=exc.hint
            ) from None
    try:
        validate_aliases(config.aliases)
    except QuerySyntaxError as exc:
        name = (exc.watchlist or "").lstrip("@")
        raise exc.with_context(
            file=file,
            line=_line_of(tree, ("aliases", name)),
            field=f"aliases.{name}" if name else "aliases",
        ) from None
    for i, wl in enumerate(config.watchlists):
        try:
            Matcher([WatchlistQuery(wl.name, wl.query, tuple(wl.stem))], config.aliases)
        except QuerySyntaxError as exc:
            raise exc.with_context(
                watchlist=wl.name,
                file=file,
                line=_line_of(tree, ("watchlists", i, "query")),
                field=f"watchlists[{i}].query",
            ) from None


def resolve_database_url(url: str, base: Path, *, env: Mapping[str, str] | None = None) -> str:
    """Make a relative SQLite path absolute, never relative to the working directory.

    It resolves against ``$STATE_DIRECTORY`` when that is set (systemd's
    ``StateDirectory=``, the first one when it lists several), else against ``base``,
    the config file's folder: a systemd unit and ``make run`` start in different folders,
    and the same file must always find the same database. ``env``: os.environ unless given.
    """
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        rest = url[len(prefix) :]
        path_part, sep, query = rest.partition("?")
        if path_part and not path_part.startswith(":"):
            state = (os.environ if env is None else env).get("STATE_DIRECTORY", "").split(":")[0]
            path = ((Path(state) if state else base) / path_part).resolve()
            return f"sqlite:///{path}" + (sep + query if sep else "")
    return url


def parse_config(
    text: str, *, file: str = DEFAULT_CONFIG, env: Mapping[str, str] | None = None, for_sending: bool = True
) -> tuple[Config, Any]:
    """Validate config text; returns the Config and the YAML tree (for line look-ups).

    ``for_sending=False``: the targets' and the web token's variables may be unset (see
    :func:`_expand_env`); such a config must not be used to send or to serve.

    Two readings. The fast one loads plain values with libyaml (ruamel's C parser, YAML
    1.2 resolution all the same): 0.05 s for a 1,000-feed file, against 0.5 s for the
    round-trip loader, which keeps every node's line for the error messages. A valid file
    is read only the fast way; a file with any error is read again the round-trip way,
    so that the error names its line.
    """
    env = os.environ if env is None else env
    try:
        _check_yaml_size(text, file)
        fast = _fast_tree(text)
    except YAMLError:  # not YAML at all: the round-trip reading says where
        fast = None
    if fast is not None:
        try:
            return _validated(fast, file, env, for_sending), fast
        except ConfigError:
            pass  # read it again with lines, for the message
    tree = _round_trip_tree(text, file)
    return _validated(tree, file, env, for_sending), tree


def _fast_tree(text: str) -> dict[Any, Any] | None:
    """The file as plain values, or None if libyaml is missing or the file is not a mapping
    it reads (the round-trip reading then says what is wrong, and where)."""
    if not _HAS_LIBYAML:
        return None
    try:
        # A YAML object holds its parser's state: one per reading (reloads and web edits
        # may read at the same time).
        tree = YAML(typ="safe", pure=False).load(text)
    except YAMLError:
        return None
    if tree is None:
        return {}
    return tree if isinstance(tree, dict) else None


def _round_trip_tree(text: str, file: str) -> CommentedMap:
    try:
        tree = _load_yaml_tree(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", file=file, line=line) from None
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, CommentedMap):
        raise ConfigError("the top level must be a mapping of settings", file=file, line=1)
    return tree


def _validated(tree: dict[Any, Any], file: str, env: Mapping[str, str], for_sending: bool) -> Config:
    """The Config of a tree (either reading), ``${VAR}`` expanded in place; ConfigError,
    with a line when the tree is the round-trip one."""
    for loc, name in _expand_env(tree, env, for_sending=for_sending):
        if name == "${":
            raise ConfigError(
                "malformed ${...}: a variable is written ${NAME} (letters, digits, '_')",
                file=file,
                line=_line_of(tree, loc),
                field=_field_path(loc),
                hint="write $${ for a literal ${",
            )
        raise ConfigError(
            f"environment variable {name} is not set",
            file=file,
            line=_line_of(tree, loc),
            field=_field_path(loc),
            hint=f"export {name}=... or set it in the service's EnvironmentFile ($${{ is a literal ${{)",
        )
    _duplicates(tree, file)
    try:
        config = Config.model_validate(_plain(tree))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting {loc[-1]!r}"
            hint = "check the spelling against README.md's configuration reference"
        elif err["type"] == "missing":
            msg = "this setting is required"
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(msg, file=file, line=_line_of(tree, loc), field=_field_path(loc) or None, hint=hint) from None
    _cross_checks(config, tree, file)
    return config


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, for_sending: bool = True
) -> LoadedConfig:
    """Read, expand and validate a config file. Raises ConfigError naming file, line and field.

    ``for_sending=False`` for commands that neither send nor serve (see :func:`parse_config`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", file=str(p)) from None
    config, _ = parse_config(text, file=str(p), env=env, for_sending=for_sending)
    return LoadedConfig(
        config=config,
        path=p.resolve(),
        database_url=resolve_database_url(config.database, p.resolve().parent, env=env),
    )
