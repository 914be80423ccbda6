"""news-monitor: a self-hosted news-monitoring alert daemon.

Data flows one way, one package per stage (docs/architecture.md has the full map)::

    ingest/         matching/   ingest/      storage/        delivery/
    fetch, formats  matcher     decide   ->  stories,    ->  routing -> render -> channels
    (httpx, feedparser,         (pure        outbox          (pure)     (Jinja2)   (Apprise)
     JSON Feed)     (pure)       intents)    (SQLAlchemy)

``config/`` loads, validates and edits ``config.yaml``; ``app/`` wires the stages: the
poll cycle (``app/poll.py``), the outbox drain loop (``app/deliver.py``), the daemon
and its scheduler, the CLI and the web app over one service layer. Imports only go
down the ranks listed in ``tests/test_layout.py``; the pure modules import no
database, network or scheduler code.
"""

__version__ = "0.1.0"

import sys as _sys

# httpx imports its command-line client (rich, pygments and click: 5.3 MB resident, every
# process) whenever those are installed, and they are: news-monitor's own CLI uses rich
# and click. news-monitor never runs httpx's CLI; with this entry ``httpx/__init__``'s
# ``from ._main import main`` raises ImportError and httpx defines its stub instead.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
