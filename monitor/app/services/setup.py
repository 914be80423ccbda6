"""``news-monitor init``: a commented ``config.yaml`` from a few answers, then a real test send.

The written file starts from the bundled ``config.yaml`` (shipped as this package's
``config.yaml``), section by section, so it keeps every comment that explains the
settings: the database, the poll settings, the aliases and the default watchlists are
taken as they are; the ``targets:`` section is written from the answers; the feeds and
the watchlists are replaced only when the user gives their own; every ``notify:`` of
the default watchlists and of ``health:`` names the targets set up.

Secrets never enter the file: the SMTP password is written as a ``${SMTP_PASSWORD}``
reference and a Slack webhook as ``${SLACK_WEBHOOK_URL}`` (both names can be changed),
and :class:`InitResult` says which variables the daemon's environment must hold. A
password typed at the prompt lives only in memory, for the test send, and appears in no
message, log line or return value (Apprise's log records go through the delivery
layer's secret scrubbing).

Contract: :func:`build_config_text` is pure (answers in, text out);
:func:`init_config` validates that text with the daemon's own loader, refuses to
overwrite an existing file unless told to, writes it atomically and sends one sample
alert to every target whose secrets are at hand, through the delivery code the daemon
uses. Every refusal is a :class:`~monitor.errors.ConfigError` naming what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from monitor.config.edit import atomic_write, slug, unique_name
from monitor.config.model import DEFAULT_CONFIG, Config, escape_env, parse_config
from monitor.errors import ConfigError, MonitorError, QuerySyntaxError

Security = Literal["starttls", "ssl", "plain", "relay"]

#: How each way of reaching an SMTP server is written as an Apprise URL: the scheme, the
#: ``mode=`` parameter and the usual port.
SECURITY_MODES: Mapping[Security, tuple[str, str, int]] = {
    "starttls": ("mailtos", "starttls", 587),  # submission port, TLS after EHLO
    "ssl": ("mailtos", "ssl", 465),  # SMTPS: TLS from the first byte
    "plain": ("mailto", "insecure", 25),  # no TLS, with a login (a trusted network only)
    "relay": ("mailto", "insecure", 25),  # a local relay (postfix, msmtpd): no TLS, no login
}
SECURITY_HELP: Mapping[Security, str] = {
    "starttls": "STARTTLS, usually port 587: most providers",
    "ssl": "SMTPS, TLS from the first byte, usually port 465",
    "plain": "plain SMTP with a login, unencrypted: a trusted network only",
    "relay": "a local relay such as postfix on this machine: no login, unencrypted",
}
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS_RE = re.compile(r"^[^@\s,;<>?&/]+@[^@\s,;<>?&/]+\.[^@\s,;<>?&/]+$|^[^@\s,;<>?&/]+@localhost$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$")
_VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOP_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):")
_NOTIFY_RE = re.compile(r"^(\s*(?:-\s+)?)notify: \[[^\]\n]*\]\s*$", re.MULTILINE)
#: Characters that change the meaning of a URL when a password holding them is placed
#: in one as it is (``${SMTP_PASSWORD}`` is expanded without encoding).
URL_RESERVED = frozenset("@/?#%:&+ ")


@dataclass(frozen=True, slots=True)
class EmailSetup:
    """An e-mail target: who gets the alerts, and how to reach the SMTP server."""

    to: str
    host: str = "localhost"
    security: Security = "starttls"
    port: int | None = None  # None: the usual port of ``security``
    user: str | None = None  # None: no login (a relay)
    sender: str | None = None  # None: the user when it is an address, else ``to``
    password_env: str = "SMTP_PASSWORD"

    @property
    def from_address(self) -> str:
        if self.sender:
            return self.sender
        return self.user if self.user and "@" in self.user else self.to


@dataclass(frozen=True, slots=True)
class SlackSetup:
    """A Slack target: an incoming webhook whose URL the environment variable holds."""

    webhook_env: str = "SLACK_WEBHOOK_URL"


@dataclass(frozen=True, slots=True)
class InitPlan:
    """What ``init`` writes: empty ``themes`` keeps the default watchlists, empty ``feeds``
    the bundled news feeds; no e-mail and no Slack leaves alerts on the console."""

    themes: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    email: EmailSetup | None = None
    slack: SlackSetup | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """The targets the watchlists notify."""
        chosen = tuple(name for name, on in (("email", self.email), ("slack", self.slack)) if on)
        return chosen or ("console",)


@dataclass(frozen=True, slots=True)
class SampleSend:
    """One sample alert sent (or not) to a target; ``error`` is already free of secrets."""

    target: str
    display_url: str = ""
    error: str | None = None
    skipped: str | None = None  # why nothing was sent (a variable not set)

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None


@dataclass(frozen=True, slots=True)
class InitResult:
    """The file written, what it holds, the test sends, and what to do next."""

    path: str
    watchlists: tuple[str, ...]
    feeds: int
    targets: tuple[str, ...]
    env_needed: tuple[str, ...]  # variables the daemon's environment must hold
    sends: tuple[SampleSend, ...] = ()
    warnings: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # what to run next, in order


def bundled_config() -> str:
    """The text of the bundled ``config.yaml``."""
    return files("monitor.app.services").joinpath("config.yaml").read_text(encoding="utf-8")


# --- validation of the answers ------------------------------------------------------------


def check_email(email: EmailSetup) -> None:
    """:class:`ConfigError` naming the first answer that cannot work."""
    for what, address in (("recipient", email.to), ("sender", email.from_address)):
        if not _ADDRESS_RE.match(address):
            raise ConfigError(f"{what} {address!r} is not an e-mail address (like desk@example.org)")
    if not _HOST_RE.match(email.host):
        raise ConfigError(f"SMTP server {email.host!r} is not a host name (like smtp.example.org)")
    if email.port is not None and not 0 < email.port < 65536:
        raise ConfigError(f"SMTP port {email.port} is not a port (1-65535)")
    if email.security == "relay" and email.user:
        raise ConfigError("a local relay takes no login: choose 'plain', 'starttls' or 'ssl' to log in")
    if email.security == "plain" and not email.user:
        raise ConfigError("'plain' SMTP means a login without encryption: give a user, or choose 'relay'")
    check_env_name(email.password_env)


def check_env_name(name: str) -> None:
    if not _ENV_NAME_RE.match(name):
        raise ConfigError(f"{name!r} is not an environment variable name (letters, digits, '_')")


def check_theme(theme: str) -> None:
    """A theme is a watchlist query: a bad one raises the parser's
    :class:`~monitor.errors.QuerySyntaxError` (with its column), for the field ``theme``."""
    from monitor.matching.matcher import compile_query

    try:
        compile_query(theme, _bundled_aliases())
    except QuerySyntaxError as exc:
        reason = exc.message.split(" at column ")[0]
        if exc.watchlist:  # "watchlist 'query': ...": the theme is not a watchlist yet
            reason = reason.split(": ", 1)[1]
        raise QuerySyntaxError(
            reason, query=exc.query, column=exc.column, expected=exc.expected, field="theme"
        ) from None


def _bundled_aliases() -> dict[str, str]:
    config, _ = parse_config(bundled_config(), file="config.yaml", env={}, for_sending=False)
    return dict(config.aliases)


# --- the text -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Section:
    key: str  # "" for the file's header comment
    preamble: str  # the comment lines above the key
    body: str  # the key's line and everything indented under it


def split_sections(text: str) -> list[_Section]:
    """A YAML file of top-level keys, cut into the keys with their comment above them."""
    lines = text.splitlines(keepends=True)
    header_end = 0
    while header_end < len(lines) and lines[header_end].startswith("#"):
        header_end += 1
    sections = [_Section("", "".join(lines[:header_end]), "")]
    pending: list[str] = []
    preamble: list[str] = []
    body: list[str] = []
    key = ""
    for line in lines[header_end:]:
        m = _TOP_KEY_RE.match(line)
        if m:
            if key:
                sections.append(_Section(key, "".join(preamble), "".join(body)))
            key, preamble, body, pending = m.group(1), pending, [line], []
        elif key and (line[:1] in (" ", "\t") or (not line.strip() and not pending)):
            body.extend(pending)
            pending = []
            body.append(line)
        else:
            pending.append(line)
    if key:  # what follows the last key at the left margin (a closing comment) stays with it
        sections.append(_Section(key, "".join(preamble), "".join(body + pending)))
    else:
        sections[0] = _Section("", sections[0].preamble + "".join(pending), "")
    return sections


def yaml_string(text: str) -> str:
    """A double-quoted YAML scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def email_url(email: EmailSetup) -> str:
    """The Apprise URL of the e-mail target, with the password as a ``${VAR}`` reference."""
    scheme, mode, default_port = SECURITY_MODES[email.security]
    login = ""
    if email.user:
        login = f"{escape_env(quote(email.user, safe=''))}:${{{email.password_env}}}@"
    port = email.port or default_port
    query = f"mode={mode}&from={quote(email.from_address, safe='@')}&to={quote(email.to, safe='@')}"
    return f"{scheme}://{login}{escape_env(email.host)}:{port}?{escape_env(query)}"


def _targets_section(plan: InitPlan) -> str:
    lines = [
        "# Where alerts go: a name -> an Apprise URL (https://github.com/caronc/apprise/wiki).",
        "# ${VAR} is replaced from the environment: secrets live there, not in this file.",
        "targets:",
        "  # Prints alerts on the daemon's standard output (and so in the journal).",
        "  console: console://",
    ]
    if plan.email is not None:
        e = plan.email
        port = e.port or SECURITY_MODES[e.security][2]
        lines.append(f"  # E-mail to {e.to} through {e.host}:{port}; {SECURITY_HELP[e.security]}.")
        if e.user:
            lines.append(f"  # The password comes from the environment variable {e.password_env}.")
        lines.append(f"  email: {yaml_string(written_targets(plan)['email'])}")
    if plan.slack is not None:
        lines.append(
            f"  # Slack incoming webhook: {plan.slack.webhook_env} holds its URL "
            "(https://hooks.slack.com/services/T../B../X..)."
        )
        lines.append(f"  slack: {yaml_string(written_targets(plan)['slack'])}")
    return "\n".join(lines) + "\n"


def _feeds_section(urls: Sequence[str]) -> str:
    lines = ["# News feeds (add more with: news-monitor feeds add URL).", "feeds:"]
    taken: set[str] = set()
    for url in urls:
        host = re.sub(r"^https?://(www\.)?", "", url.strip(), flags=re.IGNORECASE).split("/")[0]
        name = unique_name(slug(host.split(":")[0]), taken)
        taken.add(name)
        lines.append(f"  - {{name: {name}, url: {yaml_string(escape_env(url.strip()))}}}")
    return "\n".join(lines) + "\n"


def _watchlists_section(themes: Sequence[str], targets: Sequence[str]) -> str:
    lines = [
        "# Your themes, one watchlist each (query syntax: see the aliases above; try a query",
        "# on stored stories with: news-monitor watchlist test QUERY).",
        "watchlists:",
    ]
    taken: set[str] = set()
    for theme in themes:
        name = unique_name(slug(theme, fallback="theme")[:40].strip("-") or "theme", taken)
        taken.add(name)
        lines += [f"  - name: {name}", f"    query: {yaml_string(theme)}", f"    notify: [{', '.join(targets)}]"]
    return "\n".join(lines) + "\n"


HEADER = """\
# news-monitor configuration, written by `news-monitor init`.
#
# Edit freely: the daemon re-reads this file when it changes (and on SIGHUP).
# ${VAR} in the database, the targets and the feed URLs is replaced from the
# environment, so secrets such as an SMTP password live there, not here.
# Durations accept 30s, 10m, 2h, 1d or a number of seconds; sizes accept 512KB, 10MB.
"""


def build_config_text(plan: InitPlan, template: str | None = None) -> str:
    """The config text for ``plan``, from the bundled config (or ``template``). Pure."""
    out = [HEADER]
    for section in split_sections(bundled_config() if template is None else template):
        if not section.key:
            continue
        preamble, body = section.preamble, section.body
        if section.key == "targets":
            preamble, body = "", _targets_section(plan)
        elif section.key == "feeds" and plan.feeds:
            preamble, body = "", _feeds_section(plan.feeds)
        elif section.key == "watchlists" and plan.themes:
            preamble, body = "", _watchlists_section(plan.themes, plan.targets)
        elif section.key in ("watchlists", "health"):
            body = _notify(body, plan.targets)
        out.append(preamble.lstrip("\n") + body)
    return "\n".join(part.strip("\n") + "\n" for part in out)


def _notify(body: str, targets: Sequence[str]) -> str:
    """Every flow-style ``notify: [...]`` of a section's text set to ``targets``."""
    return _NOTIFY_RE.sub(lambda m: f"{m.group(1)}notify: [{', '.join(targets)}]", body)


def default_watchlists(targets: Sequence[str], template: str | None = None) -> str:
    """The bundled config's ``aliases:`` and ``watchlists:`` sections, with their comments,
    every watchlist notifying ``targets``. Pure."""
    wanted = {"aliases": "", "watchlists": ""}
    for section in split_sections(bundled_config() if template is None else template):
        if section.key in wanted:
            body = _notify(section.body, targets) if section.key == "watchlists" else section.body
            wanted[section.key] = section.preamble.lstrip("\n") + body
    return "\n".join(text.strip("\n") + "\n" for text in wanted.values() if text)


def referenced_variables(text: str) -> tuple[str, ...]:
    """The ``${VAR}`` names a config text uses, in order, once each."""
    return tuple(dict.fromkeys(_VAR_RE.findall(text)))


# --- writing and the test send ------------------------------------------------------------


def validate_text(text: str, path: str, env: Mapping[str, str] | None = None) -> Config:
    """The daemon's validation of ``text``, with the secrets' variables not needed yet."""
    placeholders = {name: "set-later" for name in referenced_variables(text)}
    config, _ = parse_config(text, file=path, env={**placeholders, **(os.environ if env is None else env)})
    return config


def written_targets(plan: InitPlan) -> dict[str, str]:
    """The targets ``init`` writes besides the console, with their URLs as written."""
    out = {}
    if plan.email is not None:
        out["email"] = email_url(plan.email)
    if plan.slack is not None:
        out["slack"] = f"${{{plan.slack.webhook_env}}}"
    return out


def init_config(
    path: str | os.PathLike[str],
    plan: InitPlan,
    *,
    force: bool = False,
    secrets: Mapping[str, str] | None = None,
    test_send: bool = True,
    env: Mapping[str, str] | None = None,
) -> InitResult:
    """Write the config of ``plan`` at ``path`` and send a sample alert to each real target.

    ``secrets``: values typed at the prompt (a password), used for the test send only
    and written nowhere; ``env``: the environment for the other variables (os.environ).
    An existing file is refused unless ``force``.
    """
    if plan.email is not None:
        check_email(plan.email)
    if plan.slack is not None:
        check_env_name(plan.slack.webhook_env)
    for theme in plan.themes:
        check_theme(theme)
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError("the file already exists; nothing was written", file=str(target), hint="--force replaces it")
    text = build_config_text(plan)
    config = validate_text(text, str(target), env)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text)
    except OSError as exc:
        raise ConfigError(f"cannot write the config file: {exc.strerror or exc}", file=str(target)) from None
    environment = {**(os.environ if env is None else env), **(secrets or {})}
    needed = referenced_variables("".join(written_targets(plan).values()))
    sends = send_samples(text, str(target), environment, written_targets(plan)) if test_send else ()
    return InitResult(
        path=str(target),
        watchlists=tuple(w.name for w in config.watchlists),
        feeds=len(config.feeds),
        targets=plan.targets,
        env_needed=needed,
        sends=sends,
        warnings=_password_warnings(plan, environment),
        commands=next_commands(str(target)),
    )


def next_commands(path: str) -> tuple[str, ...]:
    """The commands to run next: check the file, then start the daemon."""
    flag = "" if path == DEFAULT_CONFIG else f"--config {shlex.quote(path)} "
    return (f"news-monitor {flag}check-config", f"news-monitor {flag}run")


def _password_warnings(plan: InitPlan, environment: Mapping[str, str]) -> tuple[str, ...]:
    email = plan.email
    if email is None or not email.user:
        return ()
    value = environment.get(email.password_env)
    if value is not None and URL_RESERVED & set(value):
        return (
            f"the password in {email.password_env} holds a character that is special in a URL "
            "(one of @ / ? # % : & + or a space): write it percent-encoded (%40 for @) in the variable",
        )
    return ()


def send_samples(
    text: str, path: str, environment: Mapping[str, str], raw: Mapping[str, str]
) -> tuple[SampleSend, ...]:
    """One sample alert to each target of ``raw`` (name -> URL as written in ``text``), as
    the daemon would send it with ``environment``; a target whose variables are unset is
    skipped, naming them."""
    from monitor.delivery.channels import send_or_raise
    from monitor.delivery.notify import load_channels
    from monitor.delivery.render import Renderer

    missing = [name for name in referenced_variables(text) if name not in environment]
    config, _ = parse_config(text, file=path, env={**{m: "unset" for m in missing}, **environment})
    renderer = Renderer(timezone=config.timezone, overrides=config.templates)
    out: list[SampleSend] = []
    for name, url in raw.items():
        unset = [v for v in referenced_variables(url) if v in missing]
        if unset:
            out.append(SampleSend(name, skipped=f"{', '.join(unset)} not set"))
            continue
        try:
            channel = load_channels({name: config.targets[name].url}, timeout=config.delivery.timeout)[name]
            send_or_raise(channel, renderer.alert(renderer.sample(test=True), channel.flavour))
        except MonitorError as exc:
            out.append(SampleSend(name, error=str(exc)))
            continue
        out.append(SampleSend(name, display_url=channel.display_url))
    return tuple(out)


__all__ = [
    "SECURITY_HELP",
    "SECURITY_MODES",
    "EmailSetup",
    "InitPlan",
    "InitResult",
    "SlackSetup",
    "SampleSend",
    "build_config_text",
    "bundled_config",
    "check_email",
    "check_theme",
    "default_watchlists",
    "email_url",
    "init_config",
    "next_commands",
    "referenced_variables",
    "send_samples",
    "split_sections",
    "written_targets",
    "validate_text",
]
