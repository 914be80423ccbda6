"""The command line: every command documents itself, errors are one clear line, match works offline."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed-article-fr.txt"


def all_commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = [(prefix, group)]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
        else:
            out.append(((*prefix, name), cmd))
    return out


@pytest.mark.parametrize(
    ("path", "cmd"), all_commands(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_has_help_with_an_example(path: tuple[str, ...], cmd: click.Command) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help and len(cmd.help.strip().splitlines()[0]) > 10
    assert "Example:" in result.output


def test_check_config_on_shipped_config() -> None:
    result = CliRunner().invoke(cli, ["--config", str(ROOT / "config.yaml"), "check-config"])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "dprk-russia-pact, kursk-troops, dprk-russia-sanctions" in result.output


def test_check_config_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "targets: {console: 'console://'}\n"
        "watchlists:\n  - name: w\n    query: 'a AND'\n    notify: [console]\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(cfg), "check-config"])
    assert result.exit_code == 1
    assert f"{cfg}:4: watchlists[0].query: watchlist 'w'" in result.output
    assert "column" in result.output
    assert "Traceback" not in result.output


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "targets:\n  mail: 'mailto://user:${PW}@127.0.0.1:2525?to=a@example.org&from=b@example.org&mode=insecure'\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(cfg), "check-config"], env={"PW": "hunter2-secret"})
    assert result.exit_code == 0, result.output
    assert "target mail:" in result.output
    assert "hunter2-secret" not in result.output


def test_match_json_lines() -> None:
    lines = [
        {"id": "seed", "title": SEED.read_text().splitlines()[0], "summary": SEED.read_text()},
        {
            "id": "sub",
            "title": "Kursk submarine disaster remembered 25 years on",
            "summary": "Families gathered in Murmansk.",
        },
        {
            "id": "troops",
            "title": "North Korean troops fighting in Russia's Kursk region, Seoul says",
            "summary": "South Korea's spy agency says Pyongyang has sent more soldiers.",
        },
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    result = CliRunner().invoke(cli, ["--config", str(ROOT / "config.yaml"), "match"], input=stdin)
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.output.strip().splitlines()]
    assert [o["id"] for o in out] == ["seed", "sub", "troops"]
    assert sorted(out[0]["watchlists"]) == ["dprk-russia-pact", "dprk-russia-sanctions", "kursk-troops"]
    assert out[1]["watchlists"] == []
    assert out[2]["watchlists"] == ["kursk-troops"]
    assert out[2]["terms"]["kursk-troops"]


def test_match_rejects_bad_json() -> None:
    result = CliRunner().invoke(cli, ["--config", str(ROOT / "config.yaml"), "match"], input="{nope\n")
    assert result.exit_code == 1
    assert "stdin line 1" in result.output


def test_test_notify_sends_sample_through_the_real_template(tmp_path: Path) -> None:
    from tests.support.smtpserver import SMTPTestServer

    with SMTPTestServer() as smtp:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"targets:\n  mail: '{smtp.apprise_url()}'\n", encoding="utf-8")
        result = CliRunner().invoke(cli, ["--config", str(cfg), "test-notify", "mail"])
        assert result.exit_code == 0, result.output
        (mail,) = smtp.wait_for(1)
        assert "[TEST] North Korean troops" in mail["Subject"]
        kinds = {p.get_content_type() for p in mail.walk()}
        assert {"text/plain", "text/html"} <= kinds
        parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
        assert "[TEST] A test message from news-monitor test-notify." in parts["text/plain"]
        assert "[TEST] A test message" in parts["text/html"]
        digest = CliRunner().invoke(cli, ["--config", str(cfg), "test-notify", "mail", "--digest"])
        assert digest.exit_code == 0, digest.output
        assert "sample digest sent to mail" in digest.output
        (_, mail) = smtp.wait_for(2)
        assert mail["Subject"].startswith("[TEST] news-monitor digest: 1 story (kursk-troops)")
        unknown = CliRunner().invoke(cli, ["--config", str(cfg), "test-notify", "nope"])
        assert unknown.exit_code == 2 and "unknown target 'nope'" in unknown.output


def test_template_override_from_config_is_used(tmp_path: Path) -> None:
    from tests.support.webhook import WebhookReceiver

    with WebhookReceiver() as hook:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"targets:\n  hook: '{hook.apprise_json_url('/h')}'\n"
            "templates:\n  text.txt: 'BREAKING {{ story.title }} via {{ story.source }}'\n",
            encoding="utf-8",
        )
        result = CliRunner().invoke(cli, ["--config", str(cfg), "test-notify", "hook"])
        assert result.exit_code == 0, result.output
        (post,) = hook.wait_for(1)
        assert post.json["message"].startswith("BREAKING [TEST] North Korean troops")


def test_bad_template_override_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  c: console://\ntemplates:\n  text.txt: '{{ story.title '\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "check-config"])
    assert result.exit_code == 1
    assert f"{cfg}:4: templates.text.txt:" in result.output
