"""Editing ``config.yaml`` in place: watchlists and feeds, safely.

Users tune watchlists all day, from the CLI and the web page, in the same file they
also edit by hand. So an edit must never cost them a comment, the order of their
sections, their quoting or indentation, and must never leave a broken file behind:

* The file is loaded with ruamel.yaml's round-trip loader (comments, order, flow or
  block style and quotes are kept) and dumped with the indentation guessed from the
  file itself; an untouched file dumps byte for byte the same (a test checks it on
  the shipped config). New items copy the style of their siblings (a flow mapping
  ``- {name: x, url: ...}`` in a list of flow mappings, quotes like the other queries).
* ``${VAR}`` references are never expanded in the edited tree: secrets stay out of
  the file. Validation expands them like the daemon does, except that variables the
  file already used before the edit may be missing here (an analyst's shell rarely
  has the service's SMTP password); a *new* missing variable is still an error.
* The whole new text goes through :func:`monitor.config.model.parse_config` (the daemon's own
  validation) before anything is written; an invalid edit raises
  :class:`~monitor.errors.ConfigError` and the file is untouched.
* The write is atomic: a temporary file in the same folder, fsync, the original's
  mode (and owner, when allowed), ``os.replace``, fsync of the folder. A crash leaves
  either the old file or the new one, and the daemon's file watcher never sees a
  half-written file from us.
* Two editors (the web page and a shell) cannot silently overwrite each other: the
  text read is remembered and :meth:`ConfigEditor.save` refuses to write when the file
  changed on disk meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from monitor.config.model import Config, WatchlistConfig, escape_env, parse_config
from monitor.errors import ConfigError, QuerySyntaxError

_ENV_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WRITE_LOCK = threading.Lock()  # one writer at a time within a process (web page + daemon)


@dataclass(frozen=True, slots=True)
class WatchlistSpec:
    """A watchlist as the editors write it (defaults are left out of the file)."""

    name: str
    query: str
    notify: tuple[str, ...]
    stem: tuple[str, ...] = ()
    enabled: bool = True
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FeedSpec:
    name: str
    url: str
    interval: str | None = None
    language: str | None = None


class _LenientEnv(Mapping[str, str]):
    """The environment, plus a placeholder for variables the file used before the edit."""

    def __init__(self, env: Mapping[str, str], known: frozenset[str]) -> None:
        self._env = env
        self._known = known

    def __getitem__(self, key: str) -> str:
        if key in self._env:
            return self._env[key]
        if key in self._known:
            return "placeholder-for-validation"
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._env or key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter({*self._env, *self._known})

    def __len__(self) -> int:
        return len({*self._env, *self._known})


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _guess_mapping_indent(text: str) -> int:
    """Indent of the first nested mapping key (2 when the file has none)."""
    parent: int | None = None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(line) - len(stripped)
        if parent is not None and depth > parent and not stripped.startswith("- "):
            if re.match(r"^[^\s#'\"\[{][^:#]*:(\s|$)", stripped):
                return depth - parent
            parent = None
        if re.match(r"^[^\s#'\"\[{-][^:#]*:\s*(#.*)?$", stripped):
            parent = depth
        else:
            parent = None
    return 2


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never half.

    The temporary file lives in the same folder (``os.replace`` is only atomic within a
    file system) and gets the original's permissions, so a 0600 config stays 0600.
    A symlinked config is written through to its target, keeping the link.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not root: the file becomes ours, which is what an editor does too
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is done either way
    finally:
        os.close(dir_fd)


class ConfigEditor:
    """Edits of one config file: load, change, validate, save.

    Adding and removing list items is done on the *text*, at the lines ruamel reports
    for the items, because ruamel hangs the comment lines that follow an item (often
    the heading comment of the next section) on that item: deleting or appending
    through the tree would move or drop them. Changing the values of an existing
    item goes through the round-trip tree, which keeps comments in place. After every
    change the new text is parsed again and checked to hold exactly the intended data
    (and nothing else changed); anything unexpected is refused and nothing is written.

    Every change method raises :class:`ConfigError` for a bad request (unknown or
    duplicate name, bad query) before changing anything; :meth:`save` validates the
    whole result and writes it atomically.
    """

    def __init__(self, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.file = str(path)
        try:
            self.original = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config file not found", file=self.file) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file: {exc}", file=self.file) from None
        self._env = os.environ if env is None else env
        self._known_vars = frozenset(_ENV_REF.findall(self.original))
        self._yaml = YAML(typ="rt")
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096  # never re-wrap a long query
        self.text = self.original
        try:
            self.tree = self._load(self.original)
            seq_indent, offset = 4, 2
            if self.original.strip():
                _, seq_indent, offset = load_yaml_guess_indent(self.original)
        except YAMLError:
            # Let the daemon's parser report it the usual way (file:line: invalid YAML).
            parse_config(self.original, file=self.file, env=self._lenient())
            raise ConfigError("invalid YAML", file=self.file) from None
        mapping = _guess_mapping_indent(self.original)
        offset = offset if offset is not None else mapping
        seq_indent = seq_indent if seq_indent is not None else offset + 2
        self._yaml.indent(mapping=mapping, sequence=max(seq_indent, offset + 2), offset=offset)
        self.changes: list[str] = []

    def _load(self, text: str) -> CommentedMap:
        tree = self._yaml.load(text)
        if tree is None:
            tree = CommentedMap()
        if not isinstance(tree, CommentedMap):
            raise ConfigError("the top level must be a mapping of settings", file=self.file, line=1)
        return tree

    # --- reading ---------------------------------------------------------------------------

    def _lenient(self) -> _LenientEnv:
        return _LenientEnv(self._env, self._known_vars)

    def render(self) -> str:
        return self.text

    def _section(self, key: str) -> CommentedSeq:
        items = self.tree.get(key)
        if items is None:
            return CommentedSeq()
        if not isinstance(items, CommentedSeq):
            raise ConfigError(f"{key!r} must be a list", file=self.file, field=key)
        return items

    def _index(self, section: str, name: str) -> int | None:
        for i, item in enumerate(self._section(section)):
            if isinstance(item, Mapping) and str(item.get("name")) == name:
                return i
        return None

    def _names(self, section: str) -> list[str]:
        return [str(item.get("name")) for item in self._section(section) if isinstance(item, Mapping)]

    def _require(self, section: str, name: str) -> int:
        i = self._index(section, name)
        if i is None:
            known = ", ".join(self._names(section)) or "none"
            raise ConfigError(f"no {section[:-1]} named {name!r}", file=self.file, hint=f"known: {known}")
        return i

    def watchlist(self, name: str) -> WatchlistSpec:
        """The watchlist as written in the file (``${VAR}`` not expanded)."""
        item = self._section("watchlists")[self._require("watchlists", name)]
        return WatchlistSpec(
            name=str(item.get("name")),
            query=str(item.get("query", "")),
            notify=tuple(str(t) for t in item.get("notify") or ()),
            stem=tuple(str(s) for s in item.get("stem") or ()),
            enabled=bool(item.get("enabled", True)),
            description=str(item["description"]) if item.get("description") else None,
        )

    def line_of(self, section: str, name: str) -> int:
        """1-based line of an item in the current text."""
        return int(self._section(section).lc.item(self._require(section, name))[0]) + 1

    # --- styling new items like their siblings --------------------------------------------

    def _styled(self, section: str, key: str, value: str) -> Any:
        """A string quoted the way the sibling items quote the same key."""
        for item in self._section(section):
            sibling = item.get(key) if isinstance(item, Mapping) else None
            if isinstance(sibling, SingleQuotedScalarString):
                return SingleQuotedScalarString(value) if "\n" not in value else value
            if isinstance(sibling, DoubleQuotedScalarString):
                return DoubleQuotedScalarString(value)
            if isinstance(sibling, str):
                return value
        if section == "watchlists" and key == "query" and "\n" not in value:
            return SingleQuotedScalarString(value)
        return value

    def _styled_list(self, section: str, key: str, values: Sequence[str]) -> CommentedSeq:
        seq = CommentedSeq(values)
        for item in self._section(section):
            sibling = item.get(key) if isinstance(item, Mapping) else None
            if isinstance(sibling, CommentedSeq):
                if sibling.fa.flow_style():
                    seq.fa.set_flow_style()
                return seq
        seq.fa.set_flow_style()  # short lists of names read best as [a, b]
        return seq

    def _new_item(self, section: str, values: Mapping[str, Any]) -> CommentedMap:
        item = CommentedMap()
        for key, value in values.items():
            item[key] = value
        siblings = [i for i in self._section(section) if isinstance(i, CommentedMap)]
        if siblings and siblings[-1].fa.flow_style():
            item.fa.set_flow_style()
        return item

    def _render_item(self, section: str, item: CommentedMap) -> list[str]:
        """The lines of one new list item, indented as the section's items are."""
        out = io.StringIO()
        self._yaml.dump(CommentedMap([(section, CommentedSeq([item]))]), out)
        return out.getvalue().splitlines(keepends=True)[1:]

    # --- text surgery -----------------------------------------------------------------------

    def _span(self, section: str, index: int) -> tuple[int, int, int]:
        """(first line incl. its leading comments, first line of the item, end) of an item, 0-based.

        The item runs from its dash to its last content line: following lines that are
        blank or comments are not part of it unless more of its content comes after them.
        """
        lines = self.text.splitlines(keepends=True)
        seq = self._section(section)
        line, col = seq.lc.item(index)
        dash = lines[line].rfind("-", 0, col)
        if dash < 0:
            raise ConfigError(
                f"cannot edit {section}[{index}] safely (unusual layout); edit the file by hand",
                file=self.file,
                line=line + 1,
            )
        end = line + 1
        last_content = line
        while end < len(lines):
            stripped = lines[end].strip()
            indent = len(lines[end]) - len(lines[end].lstrip(" "))
            if stripped and not stripped.startswith("#"):
                if indent <= dash:
                    break
                last_content = end
            end += 1
        first = line
        while first > 0:
            prev = lines[first - 1]
            indent = len(prev) - len(prev.lstrip(" "))
            if prev.strip().startswith("#") and indent >= dash:
                first -= 1
            else:
                break
        return first, line, last_content + 1

    def _apply(self, text: str, section: str, expected: list[Any]) -> None:
        """Adopt ``text`` if it parses to the intended section and leaves the rest untouched."""
        try:
            tree = self._load(text)
        except YAMLError as exc:
            raise ConfigError(
                f"internal error: the edit would not be valid YAML ({exc}); nothing was written",
                file=self.file,
            ) from None
        before = {k: _plain(v) for k, v in self.tree.items() if k != section}
        after = {k: _plain(v) for k, v in tree.items() if k != section}
        if before != after or _plain(tree.get(section) or []) != expected:
            raise ConfigError(
                f"cannot edit {section} safely in this file's layout; nothing was written",
                file=self.file,
                hint="make the change by hand",
            )
        self.text, self.tree = text, tree

    def _append(self, section: str, items: Sequence[CommentedMap]) -> None:
        expected = [*_plain(self._section(section)), *(_plain(i) for i in items)]
        seq = self.tree.get(section)
        lines = self.text.splitlines(keepends=True)
        if isinstance(seq, CommentedSeq) and len(seq) and not seq.fa.flow_style():
            _, _, end = self._span(section, len(seq) - 1)
            new_lines = [line for item in items for line in self._render_item(section, item)]
            if lines and not lines[end - 1].endswith("\n"):
                lines[end - 1] += "\n"
            text = "".join(lines[:end] + new_lines + lines[end:])
        elif seq is None or (isinstance(seq, CommentedSeq) and not len(seq)):
            # No section (or `name: []`): the tree knows best where an empty one ends.
            tree = self._load(self.text)
            tree[section] = CommentedSeq(items)
            out = io.StringIO()
            self._yaml.dump(tree, out)
            text = out.getvalue()
        else:
            raise ConfigError(
                f"{section} is written as a one-line list; rewrite it as a block list to edit it",
                file=self.file,
                field=section,
            )
        self._apply(text, section, expected)

    def _delete(self, section: str, index: int) -> None:
        expected = _plain(self._section(section))
        del expected[index]
        first, _, end = self._span(section, index)
        lines = self.text.splitlines(keepends=True)
        text = "".join(lines[:first] + lines[end:])
        if not expected:  # the last item: keep a valid, empty section
            key_line = self.tree.lc.key(section)[0]
            key_text = lines[key_line].rstrip("\n")
            lines[key_line] = re.sub(r"^(\s*[^#]*?:)(\s*(#.*)?)$", r"\1 []\2", key_text) + "\n"
            text = "".join(lines[:first] + lines[end:])
        self._apply(text, section, expected)

    def _replace(self, section: str, index: int, values: Mapping[str, Any]) -> None:
        """Change an item's values: in the tree when its keys stay the same, else as text."""
        expected = _plain(self._section(section))
        expected[index] = _plain(dict(values))
        item = self._section(section)[index]
        if isinstance(item, CommentedMap) and list(item.keys()) == list(values.keys()):
            tree = self._load(self.text)
            target = tree[section][index]
            for key, value in values.items():
                if _plain(target[key]) != _plain(value):
                    target[key] = value
            out = io.StringIO()
            self._yaml.dump(tree, out)
            self._apply(out.getvalue(), section, expected)
            return
        _, start, end = self._span(section, index)
        new = self._new_item(section, values)
        if isinstance(item, CommentedMap) and item.fa.flow_style():
            new.fa.set_flow_style()
        lines = self.text.splitlines(keepends=True)
        text = "".join(lines[:start] + self._render_item(section, new) + lines[end:])
        self._apply(text, section, expected)

    # --- watchlists ------------------------------------------------------------------------

    def _check_query(self, spec: WatchlistSpec, index: int) -> None:
        """Fail early, with the column, on a bad query (before the whole-file validation)."""
        from monitor.matching.matcher import compile_query

        aliases = self.tree.get("aliases") or {}
        try:
            compile_query(spec.query, {str(k): str(v) for k, v in aliases.items()}, spec.stem)
        except QuerySyntaxError as exc:
            raise exc.with_context(watchlist=spec.name, field=f"watchlists[{index}].query") from None

    def _watchlist_values(self, spec: WatchlistSpec, old: CommentedMap | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": spec.name,
            "query": self._styled("watchlists", "query", spec.query),
            "notify": self._styled_list("watchlists", "notify", spec.notify),
        }
        if spec.stem:
            values["stem"] = self._styled_list("watchlists", "stem", spec.stem)
        for key in ("notify", "stem"):  # an edited item keeps its own list style
            own = old.get(key) if old is not None else None
            if key in values and isinstance(own, CommentedSeq):
                values[key] = CommentedSeq(values[key])
                if own.fa.flow_style():
                    values[key].fa.set_flow_style()
        if not spec.enabled or (old is not None and old.get("enabled") is True):
            values["enabled"] = spec.enabled
        if spec.description:
            values["description"] = spec.description
        if old is not None:  # keep the item's own key order, new keys at the end
            order = [k for k in old if k in values] + [k for k in values if k not in old]
            for key in old:
                if key not in values and key not in ("stem", "enabled", "description"):
                    values[key] = old[key]  # a key this editor does not know: keep it
                    order.append(key)
            values = {k: values[k] for k in dict.fromkeys(order)}
        return values

    def add_watchlist(self, spec: WatchlistSpec) -> None:
        if self._index("watchlists", spec.name) is not None:
            raise ConfigError(
                f"a watchlist named {spec.name!r} already exists",
                file=self.file,
                hint="use `news-monitor watchlist edit` to change it",
            )
        self._check_query(spec, len(self._section("watchlists")))
        self._append("watchlists", [self._new_item("watchlists", self._watchlist_values(spec))])
        self.changes.append(f"added watchlist {spec.name!r}")

    def update_watchlist(self, name: str, spec: WatchlistSpec) -> None:
        """Replace watchlist ``name`` by ``spec`` (which may rename it), keeping its place and comments."""
        i = self._require("watchlists", name)
        if spec.name != name and self._index("watchlists", spec.name) is not None:
            raise ConfigError(f"a watchlist named {spec.name!r} already exists", file=self.file)
        self._check_query(spec, i)
        old = self._section("watchlists")[i]
        self._replace("watchlists", i, self._watchlist_values(spec, old))
        self.changes.append(
            f"changed watchlist {name!r}" + (f" (renamed to {spec.name!r})" if spec.name != name else "")
        )

    def remove_watchlist(self, name: str) -> None:
        self._delete("watchlists", self._require("watchlists", name))
        self.changes.append(f"removed watchlist {name!r}")

    # --- feeds -----------------------------------------------------------------------------

    def feed_names(self) -> list[str]:
        return self._names("feeds")

    def feed_urls(self) -> dict[str, str]:
        """Normalised URL -> feed name, for spotting a feed that is already configured."""
        out: dict[str, str] = {}
        for item in self._section("feeds"):
            if isinstance(item, Mapping) and item.get("url"):
                out[normalise_feed_url(str(item["url"]))] = str(item.get("name"))
        return out

    def add_feed(self, spec: FeedSpec) -> None:
        self.add_feeds([spec])

    def add_feeds(self, specs: Sequence[FeedSpec]) -> None:
        """Append feeds in one edit (an OPML import of hundreds is one parse, not hundreds)."""
        names = set(self._names("feeds"))
        urls = self.feed_urls()
        items: list[CommentedMap] = []
        for spec in specs:
            if spec.name in names:
                raise ConfigError(f"a feed named {spec.name!r} already exists", file=self.file)
            # A URL from OPML, the CLI or the web is stored so that it is read back literally:
            # feed URLs expand ${VAR} (for credentials written by hand), and such input must
            # never pull the daemon's secrets into a request to somebody else's host.
            written = escape_env(spec.url)
            known = urls.get(normalise_feed_url(written))
            if known is not None:
                raise ConfigError(f"the feed {spec.url} is already configured as {known!r}", file=self.file)
            names.add(spec.name)
            urls[normalise_feed_url(written)] = spec.name
            values: dict[str, Any] = {"name": spec.name, "url": self._styled("feeds", "url", written)}
            if spec.interval:
                values["interval"] = spec.interval
            if spec.language:
                values["language"] = spec.language
            items.append(self._new_item("feeds", values))
        if not items:
            return
        self._append("feeds", items)
        self.changes.append(f"added feed {specs[0].name!r}" if len(items) == 1 else f"added {len(items)} feeds")

    def remove_feed(self, name: str) -> None:
        self._delete("feeds", self._require("feeds", name))
        self.changes.append(f"removed feed {name!r}")

    # --- saving ----------------------------------------------------------------------------

    def validate(self) -> Config:
        """The validated new config; raises ConfigError, writes nothing."""
        config, _ = parse_config(self.text, file=self.file, env=self._lenient())
        return config

    def save(self) -> Config:
        """Validate, then atomically replace the file; refuse if it changed on disk meanwhile."""
        config = self.validate()
        with _WRITE_LOCK:
            try:
                now = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read config file: {exc}", file=self.file) from None
            if text_hash(now) != text_hash(self.original):
                raise ConfigError(
                    "the file changed on disk since it was read; nothing was written",
                    file=self.file,
                    hint="run the command again (or reload the page) to edit the current file",
                )
            if self.text != self.original:
                try:
                    atomic_write(self.path, self.text)
                except OSError as exc:
                    raise ConfigError(f"cannot write config file: {exc}", file=self.file) from None
        self.original = self.text
        return config


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def normalise_feed_url(url: str) -> str:
    """The same feed written two ways (case of the host, a trailing slash) is one feed."""
    url = url.strip()
    m = re.match(r"^(https?)://([^/?#]+)(.*)$", url, re.IGNORECASE)
    if not m:
        return url
    return f"{m.group(1).lower()}://{m.group(2).lower()}{m.group(3)}".rstrip("/")


def slug(text: str, *, fallback: str = "feed") -> str:
    """A config name from a feed title or URL: ``Le Monde – International`` -> ``le-monde-international``."""
    import unicodedata

    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    name = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:60].strip("-")
    return name or fallback


def unique_name(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name = base[: 64 - len(suffix)] + suffix
        n += 1
    return name


def watchlist_spec(wl: WatchlistConfig) -> WatchlistSpec:
    return WatchlistSpec(
        name=wl.name,
        query=wl.query,
        notify=tuple(wl.notify),
        stem=tuple(wl.stem),
        enabled=wl.enabled,
        description=wl.description,
    )


__all__ = [
    "ConfigEditor",
    "FeedSpec",
    "WatchlistSpec",
    "atomic_write",
    "normalise_feed_url",
    "slug",
    "text_hash",
    "unique_name",
    "watchlist_spec",
]
