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
