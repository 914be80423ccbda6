"""Apprise as the transport: one :class:`~monitor.delivery.channels.Channel` per configured target.

This is the edge where Apprise lives; nothing else in news-monitor imports it.
:func:`load_channels` turns the config's target URLs into :class:`AppriseChannel`
objects, and the drain loop sees them only as channels. Choices:

* **One Apprise object per target.** A failure is then attributable to exactly one
  target, and the outbox can retry that target alone.
* **The flavour of a target is a table** (:data:`_FLAVOUR_OF_PLUGIN`, Apprise plugin
  class -> flavour name), looked up along the plugin's class hierarchy, so a plugin built
  on another (Apprise's Delta Chat plugin is its e-mail plugin) gets its base's flavour
  and a native URL (``https://hooks.slack.com/services/…``) the flavour of the plugin
  Apprise picks for it. Every other plugin gets ``text``.
* **No Apprise retries.** The outbox retries failed deliveries with its own back-off and
  lease; an Apprise ``retry=`` in a target URL would multiply attempts behind its back,
  so such a URL is refused at start-up.
* **A deadline on every send** (``timeout``), both as Apprise's per-service limit and as
  the limit of the whole ``notify()`` call: a hung SMTP server must not hold a delivery
  worker forever. Apprise 2.x's own per-plugin throttle (e-mail: one send per 5.5 s per
  target, by sleeping in the sender) is switched off: pacing is the outbox's job
  (``rate_limit`` per target folds the overflow into a digest instead of sleeping),
  and a burst of breaking news must not queue behind 5.5 s sleeps.
* **Failures are results, not exceptions** (:class:`~monitor.delivery.channels.SendResult`):
  the reason is what Apprise logged, secrets scrubbed. Apprise cannot tell a lasting
  failure from a passing one (a 404 from a webhook may be fixed in a minute), so none
  is reported as permanent; the outbox's ``give_up_after`` decides.
* **Secrets stay out of logs and errors.** A target is shown only as
  :func:`~monitor.delivery.masking.mask_url` makes it (``display_url``: in
  ``check-config``, in every log line and failure message, hence in the outbox's last
  error), never as Apprise's ``url(privacy=True)``, which leaves webhook paths and
  ``+Header=`` values in clear. Apprise writes some secrets to its logger (its Slack
  plugin logs the webhook URL, tokens included, at debug level; its JSON, form and XML
  plugins log the POST URL; an unparseable URL may be echoed), and urllib3 logs every
  request line (a webhook's path *is* its token). A filter on those loggers masks every
  URL and request path in each record with the same rule, and replaces every known
  secret of every target (the parts ``mask_url`` masks, the values Apprise's plugin
  metadata marks private, the raw URL) with ``****``, before any handler sees it. An
  exception Apprise raises while sending is reduced to its type name for the same
  reason: its text can contain a URL with its tokens.
* **Only the plugins the targets use are imported** (:mod:`monitor.delivery.plugins`):
  Apprise on its own imports all ~190 of them at the first URL it reads.
* **A ``console://`` target** prints alerts on standard output, so ``make run`` shows
  alerts with no credentials at all.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import apprise
from apprise.plugins.email import NotifyEmail
from apprise.plugins.slack import NotifySlack

from monitor.delivery import plugins
from monitor.delivery.channels import Message, SendResult
from monitor.delivery.masking import MASK, encoded_forms, mask_text, mask_url, url_secrets
from monitor.errors import ConfigError

__all__ = ["CONSOLE_SCHEME", "AppriseChannel", "load_channels"]

log = logging.getLogger("monitor.notify")

#: The custom Apprise scheme that prints alerts on standard output.
CONSOLE_SCHEME = "console"

#: Shorter strings are not treated as secrets: scrubbing them would mangle every log
#: line, and a two-character "password" protects nothing anyway.
_MIN_SECRET_LEN = 3
_APPRISE_LOGGER = "apprise"

#: The flavour each Apprise plugin class gets (see the module docstring).
_FLAVOUR_OF_PLUGIN: dict[type, str] = {NotifyEmail: "email", NotifySlack: "slack"}
_DEFAULT_FLAVOUR = "text"

_console_lock = threading.Lock()
_register_lock = threading.Lock()


def _console_send(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Apprise ``console://`` plugin: one block per alert on stdout, written at once.

    ``sys.stdout`` is looked up at call time, so a redirected stdout (the journal,
    pytest's capture) receives the alert.
    """
    lines = []
    if title:
        lines += [title, "-" * min(max(len(title), 8), 78)]
    lines += [body.rstrip("\n"), "", ""]
    with _console_lock:
        sys.stdout.write("\n".join(lines))
        sys.stdout.flush()
    return True


def _register_console() -> None:
    """Register ``console://`` with Apprise once per process.

    Apprise's plugin registry is process-wide; registering a scheme twice logs a
    warning and keeps the first, so the check makes re-imports and any number of
    :func:`load_channels` calls harmless.
    """
    with _register_lock:
        # Apprise's registry and decorator carry no type hints.
        if CONSOLE_SCHEME in apprise.NotificationManager():  # type: ignore[no-untyped-call]
            return
        apprise.decorators.notify(  # type: ignore[no-untyped-call]
            on=CONSOLE_SCHEME, name="news-monitor console", body_format=apprise.NotifyFormat.TEXT
        )(_console_send)


class _SecretFilter(logging.Filter):
    """Masks URLs and replaces known secrets in every record of the loggers it is attached to.

    A logger filter runs before any handler, Apprise's own result capture included,
    so the scrubbed text is all that reaches log files, consoles and ``result.logs()``.
    """

    news_monitor_scrubber = True

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._temporary: list[frozenset[str]] = []
        self._pattern: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(_variants(secrets))
            self._compile()

    @contextmanager
    def temporarily(self, secrets: Iterable[str]) -> Iterator[None]:
        """Also scrub ``secrets`` inside the block (URL parts before Apprise parsed it)."""
        extra = frozenset(_variants(secrets))
        with self._lock:
            self._temporary.append(extra)
            self._compile()
        try:
            yield
        finally:
            with self._lock:
                self._temporary.remove(extra)
                self._compile()

    def scrub(self, text: str) -> str:
        """``text`` with its URLs masked (:func:`mask_text`) and every known secret replaced."""
        text = mask_text(text)
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True

    def _compile(self) -> None:
        every = self._secrets.union(*self._temporary)
        # Longest first, so a URL is masked whole rather than token by token.
        ordered = sorted(every, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def _variants(secrets: Iterable[str]) -> set[str]:
    """Each secret as given, percent-encoded and percent-decoded (logs show each)."""
    return {form for secret in secrets for form in encoded_forms(secret) if len(form) >= _MIN_SECRET_LEN}


#: Loggers that can see a target's secrets: Apprise's own, and urllib3's (under
#: ``requests``), which logs each request line at debug level, e.g.
#: ``"POST /services/T…/B…/X… HTTP/1.1" 200`` for a Slack webhook. Filters attached to a
#: logger apply only to records created on that very logger, hence the full names.
_SCRUBBED_LOGGERS = (
    _APPRISE_LOGGER,
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
)


def _shared_scrubber() -> _SecretFilter:
    """The one scrubber, installed on every logger of :data:`_SCRUBBED_LOGGERS`.

    Found by a marker rather than a module global, so a second import of this module
    (``importlib.reload``, another import path) reuses it instead of stacking filters
    that each know only half of the secrets.
    """
    with _register_lock:
        scrubber: _SecretFilter | None = None
        for existing in logging.getLogger(_APPRISE_LOGGER).filters:
            if getattr(existing, "news_monitor_scrubber", False):
                scrubber = cast(_SecretFilter, existing)
        if scrubber is None:
            scrubber = _SecretFilter()
        for name in _SCRUBBED_LOGGERS:
            target = logging.getLogger(name)
            if scrubber not in target.filters:
                target.addFilter(scrubber)
        return scrubber


_SCRUBBER = _shared_scrubber()


def _plugin_secrets(plugin: Any) -> set[str]:
    """The private values of a loaded Apprise plugin, as its own metadata marks them.

    Every Apprise plugin flags its secret URL parts (``password``, Slack's three
    tokens, bot tokens, API keys) with ``"private": True`` in ``template_tokens``,
    ``template_args`` or ``template_kwargs``; ``map_to`` names the attribute holding
    the value.
    """
    found: set[str] = set()
    for table in ("template_tokens", "template_args", "template_kwargs"):
        for key, meta in (getattr(plugin, table, None) or {}).items():
            if not (isinstance(meta, dict) and meta.get("private")):
                continue
            value = getattr(plugin, str(meta.get("map_to", key)), None)
            if isinstance(value, str):
                found.add(value)
            elif isinstance(value, list | tuple | set | frozenset):
                found.update(v for v in value if isinstance(v, str))
    password = getattr(plugin, "password", None)
    if isinstance(password, str):
        found.add(password)
    return {s for s in found if s}


class _LogCollector(logging.Handler):
    """Collects Apprise warnings while a URL loads, to explain why it was refused."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _replace_all(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``****``, longest first.

    A second line of defence for a display URL: a value Apprise's metadata marks private
    but that sits in a part :func:`mask_url` shows (an option it deems harmless).
    """
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _flavour_of(plugin: object) -> str:
    for cls in type(plugin).__mro__:
        if cls in _FLAVOUR_OF_PLUGIN:
            return _FLAVOUR_OF_PLUGIN[cls]
    return _DEFAULT_FLAVOUR


class AppriseChannel:
    """One target, sending through its own Apprise object; a :class:`~monitor.delivery.channels.Channel`.

    Sends are serialised: Apprise plugins keep per-instance state (SMTP session).
    """

    __slots__ = ("_apobj", "_display_url", "_flavour", "_headers", "_lock", "_name", "_timeout")

    def __init__(self, name: str, apobj: apprise.Apprise, *, flavour: str, display_url: str, timeout: float) -> None:
        self._name = name
        self._apobj = apobj
        self._flavour = flavour
        self._display_url = display_url
        self._timeout = timeout
        self._lock = threading.Lock()
        # The custom webhooks (json://, form://, xml://) send these headers with each post.
        headers = getattr(apobj[0], "headers", None) if len(apobj) else None
        self._headers: dict[str, str] | None = headers if isinstance(headers, dict) else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def flavour(self) -> str:
        """``email`` (mailto/mailtos), ``slack`` or ``text``: see :data:`_FLAVOUR_OF_PLUGIN`."""
        return self._flavour

    @property
    def display_url(self) -> str:
        """The target's URL as configured, with every secret masked (:func:`~monitor.delivery.masking.mask_url`)."""
        return self._display_url

    def send(self, message: Message) -> SendResult:
        """Deliver ``message``; a failure's reason is what Apprise logged, secrets scrubbed."""
        with self._lock:
            if self._headers is not None:
                if message.idempotency_key:
                    self._headers["Idempotency-Key"] = message.idempotency_key
                else:
                    self._headers.pop("Idempotency-Key", None)
            try:
                result = self._apobj.notify(
                    body=message.body,
                    title=message.title,
                    body_format=apprise.NotifyFormat(message.body_format),
                    timeout=self._timeout,
                )
            except Exception as exc:
                # Apprise reports delivery problems in its result; an exception here is a
                # bug or a refused argument. Its text may hold a URL: keep only the type.
                return SendResult.failed(f"Apprise raised {type(exc).__name__}")
        if result:
            log.debug("alert %r sent to %s (%s)", message.title, self._name, self._display_url)
            return SendResult.sent()
        status = getattr(getattr(result, "status", None), "name", "FAILURE")
        reasons: list[str] = []
        for entry in result.logs():
            if logging.getLevelName(entry.level) in (logging.DEBUG, logging.INFO):
                continue
            text = _SCRUBBER.scrub(entry.message)
            if text not in reasons:
                reasons.append(text)
        reason = "; ".join(reasons) or "no reason logged"
        if status == "TIMEOUT":
            reason = f"no answer within {self._timeout:g}s ({reason})"
        return SendResult.failed(f"delivery failed ({status.lower()}): {reason}")


def load_channels(targets: Mapping[str, str], *, timeout: float = 30.0) -> dict[str, AppriseChannel]:
    """One channel per target, in configuration order.

    ``targets`` maps target names to Apprise URLs (environment variables already
    expanded). Each URL is loaded here: an unusable one raises
    :class:`~monitor.errors.ConfigError` naming the target, never showing the URL's
    secrets. ``timeout`` bounds every send (see the module docstring).
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    plugins.load_for(
        (url for url in targets.values() if isinstance(url, str)),
        custom=(CONSOLE_SCHEME,),
    )
    _register_console()
    asset = apprise.AppriseAsset(app_id="news-monitor", service_timeout=float(timeout))
    return {name: _load(name, url, asset, float(timeout)) for name, url in targets.items()}


def _load(name: str, url: str, asset: apprise.AppriseAsset, timeout: float) -> AppriseChannel:
    where = f"targets.{name}"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"target {name!r} has no URL", field=where)
    url = url.strip()
    collector = _LogCollector()
    apprise_log = logging.getLogger(_APPRISE_LOGGER)
    # The raw URL too, when it has anything to hide (``console://`` has not). While
    # Apprise loads it, every masked part is scrubbed, however short: its complaint
    # about a bad token quotes the token.
    raw = {url} if mask_url(url) != url else set()
    with _SCRUBBER.temporarily(url_secrets(url, every_part=True) | raw):
        apprise_log.addHandler(collector)
        try:
            plugin: Any = apprise.Apprise.instantiate(url, asset=asset)
        finally:
            apprise_log.removeHandler(collector)
    if plugin is None:
        reason = "; ".join(dict.fromkeys(collector.messages)) or "unsupported or malformed URL"
        raise ConfigError(
            f"target {name!r}: Apprise cannot use the URL {mask_url(url)}: {reason}",
            field=where,
            hint="see https://github.com/caronc/apprise/wiki for the URL of each service",
        )
    secrets = _plugin_secrets(plugin) | url_secrets(url)
    _SCRUBBER.add(secrets | raw)
    display_url = _replace_all(mask_url(url), _variants(secrets))
    if int(getattr(plugin, "retry", 0) or 0) > 0:
        raise ConfigError(
            f"target {name!r} ({display_url}): remove 'retry=' from the URL",
            field=where,
            hint="news-monitor retries failed alerts itself; Apprise retries would multiply them",
        )
    plugin.request_rate_per_sec = 0  # see the module docstring: the outbox paces
    apobj = apprise.Apprise(asset=asset)
    apobj.add(plugin)
    flavour = _flavour_of(plugin)
    log.debug("target %s: %s (%s)", name, display_url, flavour)
    return AppriseChannel(name, apobj, flavour=flavour, display_url=display_url, timeout=timeout)
