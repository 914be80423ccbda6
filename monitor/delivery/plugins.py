"""Load only the Apprise plugins the configured targets use.

Apprise imports every one of its ~190 plugin modules the first time it looks a scheme
up: about 9 MB of resident memory and 0.1-0.3 s at start-up, for a daemon that sends
e-mail and Slack. Its plugin manager can be pointed at a directory
(``load_modules(path=..., name="apprise.plugins")``): it lists the directory, imports
``apprise.plugins.<entry>`` for each entry, and from then on counts itself loaded. So:

* :func:`scheme_index` reads the plugin sources (no import) for the schemes each module
  declares (``protocol`` / ``secure_protocol`` class attributes), ~10 ms;
* :func:`load_for` makes a directory holding one empty entry per module that a target's
  scheme needs, and points the manager at it; a later call (a target added by a config
  reload) loads the modules still missing the same way.

A URL whose scheme no plugin declares, ``http(s)://`` included, can only be recognised
by asking every plugin (Apprise's "native URL" scan: ``https://hooks.slack.com/...``),
so such a URL loads every plugin, exactly as Apprise would on its own; so does a plugin
source this module cannot read. ``tests/test_notify.py`` checks the index against the
schemes Apprise itself maps after loading everything, so an Apprise upgrade that
declares schemes differently fails a test rather than a target.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import tempfile
import threading
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import apprise
from apprise.manager_plugins import NotificationManager

__all__ = ["load_for", "scheme_index", "scheme_of"]

log = logging.getLogger("monitor.notify")

_PACKAGE = "apprise.plugins"
# Apprise's own test for a scheme (``apprise.utils.parse.GET_SCHEMA_RE``).
_SCHEME = re.compile(r"\s*(?P<scheme>[a-z0-9]{1,32})://", re.IGNORECASE)
# Class-level assignments (four spaces in): the scheme declarations, and the plain
# string attributes a declaration may name (``protocol = (kodi_protocol, xbmc_protocol)``).
# Each pattern starts with a literal, which keeps the scan of ~200 files near 10 ms.
_DECLARATION = re.compile(r"\n {4}(?:secure_)?protocol[ \t]*=[ \t]*(?P<value>\([^)]*\)|\[[^\]]*\]|[^\n]+)")
_STRING_ATTRIBUTE = r"\n {{4}}{name}[ \t]*=[ \t]*(?P<value>\"[^\"\n]*\"|'[^'\n]*')[ \t]*\n"
# Module entries as Apprise's own loader accepts them (``base`` and ``_private`` are not plugins).
_ENTRY = re.compile(r"^(?P<name>(?!base|_)[a-z0-9_]+)(\.py)?$", re.IGNORECASE)

_lock = threading.Lock()
_loaded: set[str] = set()
# "started": this module has pointed the manager at a listing (or found it loaded);
# "everything": every plugin is loaded, by this module or by Apprise on its own.
_state = {"started": False, "everything": False}


def scheme_of(url: str) -> str | None:
    """The lower-cased scheme of an Apprise URL, or None if Apprise sees none."""
    match = _SCHEME.match(url)
    return match.group("scheme").lower() if match else None


@lru_cache(maxsize=1)
def scheme_index() -> Mapping[str, frozenset[str]]:
    """Scheme -> the plugin modules (entries of ``apprise/plugins``) declaring it.

    A module whose schemes are computed (Apprise's D-Bus plugin builds them from the
    main loops it finds) is left out: its schemes are unknown here, and a URL using one
    loads everything. Empty if the plugin directory cannot be read.
    """
    root = _plugin_root()
    index: dict[str, set[str]] = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return {}
    for entry in entries:
        match = _ENTRY.match(entry)
        if match is None:
            continue
        path = root / entry
        sources = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for source in sources:
            declared = _declared(source)
            if declared is None:
                log.debug("Apprise plugin %s: schemes not declared as literals", source.name)
                continue
            for scheme in declared:
                index.setdefault(scheme, set()).add(match.group("name"))
    return {scheme: frozenset(modules) for scheme, modules in index.items()}


def _declared(source: Path) -> set[str] | None:
    """The schemes ``source`` declares; None if a declaration is computed (``list(MAP)``)."""
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found: set[str] = set()
    for match in _DECLARATION.finditer(text):
        try:
            expression = ast.parse(match.group("value").strip(), mode="eval").body
        except SyntaxError:
            return None
        items = expression.elts if isinstance(expression, ast.Tuple | ast.List) else [expression]
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str | type(None)):
                value = item.value
            elif isinstance(item, ast.Name) and (named := re.search(_STRING_ATTRIBUTE.format(name=item.id), text)):
                value = ast.literal_eval(named.group("value"))
            else:
                return None
            if value:
                found.add(value.lower())
    return found


def load_for(urls: Iterable[str], *, custom: Collection[str] = ()) -> None:
    """Make Apprise able to load each of ``urls``, importing as few plugins as possible.

    ``custom`` names schemes registered in this process (``console``), which need no
    plugin module. Idempotent and thread-safe. If something else in the process touched
    Apprise's plugin manager first, it has already loaded everything and this does
    nothing.
    """
    needed = _modules_for(urls, custom)
    manager = NotificationManager()  # type: ignore[no-untyped-call]
    with _lock:
        if not _state["started"]:
            _state["started"] = True
            _state["everything"] = bool(manager)
        if _state["everything"]:
            return
        if needed is None:
            _state["everything"] = True
            needed = _all_entries()
        missing = sorted(needed - _loaded)
        if not missing and bool(manager):
            return
        try:
            with tempfile.TemporaryDirectory(prefix="news-monitor-apprise-") as listing:
                for module in missing:
                    Path(listing, module).touch()
                # ``force``: the manager remembers directories by path, and a new temporary
                # directory may reuse an old one's name.
                manager.load_modules(path=listing, name=_PACKAGE, force=True)  # type: ignore[no-untyped-call]
        except OSError as exc:  # no writable temporary directory: Apprise's own way, everything
            log.debug("Apprise plugins: no listing (%s); loading every plugin", exc)
            _state["everything"] = True
            manager.load_modules(path=_plugin_root(), name=_PACKAGE, force=True)  # type: ignore[no-untyped-call]
            return
        _loaded.update(missing)
        log.debug("Apprise plugins loaded: %s", ", ".join(missing) or "none")


def _modules_for(urls: Iterable[str], custom: Collection[str]) -> set[str] | None:
    """The plugin modules ``urls`` need; None if one of them needs every plugin."""
    index = scheme_index()
    needed: set[str] = set()
    for url in urls:
        scheme = scheme_of(url)
        if scheme is None or scheme in custom:
            continue  # Apprise refuses a URL with no scheme before it looks at plugins
        modules = index.get(scheme)
        if not modules:
            return None
        needed |= modules
    return needed


def _plugin_root() -> Path:
    return Path(apprise.plugins.__file__).parent


def _all_entries() -> set[str]:
    return {m.group("name") for m in map(_ENTRY.match, os.listdir(_plugin_root())) if m is not None}
