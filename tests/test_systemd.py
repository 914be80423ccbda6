"""The systemd files, as far as this machine allows (no systemd here): the web-editing
drop-in's first-start copy, run as an unprivileged user the way the service runs it."""

from __future__ import annotations

import configparser
import os
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"


def _service(path: Path) -> dict[str, list[str]]:
    """The [Service] settings of a unit file, every value of repeated keys kept in order."""
    values: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def test_the_drop_in_resets_and_replaces_the_unit_commands() -> None:
    unit = _service(SYSTEMD / "news-monitor.service")
    drop_in = _service(SYSTEMD / "web-editing.conf")
    assert drop_in["ExecStart"][0] == "" and drop_in["ExecStartPre"][0] == ""  # reset, not appended
    (start,) = drop_in["ExecStart"][1:]
    assert start == unit["ExecStart"][0].replace("/etc/news-monitor/config.yaml", "/var/lib/news-monitor/config.yaml")
    assert any("check-config" in cmd and "/var/lib/news-monitor/config.yaml" in cmd for cmd in drop_in["ExecStartPre"])
    assert unit["DynamicUser"] == ["yes"] and unit["StateDirectory"] == ["news-monitor"]
    configparser.ConfigParser(strict=False, interpolation=None).read_string(
        (SYSTEMD / "web-editing.conf").read_text(encoding="utf-8")
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as the service's unprivileged user")
def test_the_first_start_copy_belongs_to_the_service_user() -> None:
    (copy_cmd,) = [c for c in _service(SYSTEMD / "web-editing.conf")["ExecStartPre"] if c.startswith("/bin/sh")]
    with tempfile.TemporaryDirectory(prefix="unit-") as tmp:
        os.chmod(tmp, 0o755)
        etc, state = Path(tmp) / "etc", Path(tmp) / "state"
        etc.mkdir(mode=0o755)
        state.mkdir(mode=0o750)
        os.chown(state, 65534, 65534)  # StateDirectory= belongs to the (dynamic) service user
        (etc / "config.yaml").write_text("feeds: []\n", encoding="utf-8")
        os.chmod(etc / "config.yaml", 0o644)
        cmd = copy_cmd.replace("/etc/news-monitor", str(etc)).replace("/var/lib/news-monitor", str(state))

        def as_service_user() -> None:
            os.setgid(65534)
            os.setuid(65534)

        for _ in range(2):  # the second start keeps the (edited) copy
            subprocess.run(shlex.split(cmd), check=True, preexec_fn=as_service_user, timeout=30)
            copied = (state / "config.yaml").stat()
            assert (copied.st_uid, stat.S_IMODE(copied.st_mode)) == (65534, 0o600)
            (state / "config.yaml").write_text("feeds: []\n# edited from the web page\n", encoding="utf-8")
        assert (state / "config.yaml").read_text(encoding="utf-8").endswith("# edited from the web page\n")
