"""news-monitor: a self-hosted news-monitoring alert daemon.

Data flows one way, and each step is one module::

    fetch.py  ->  parse.py  ->  matcher.py  ->  store.py  ->  outbox.py  ->  notify.py
    (httpx)       (feedparser,   (query.py,     (SQLAlchemy:   (claims,       (Apprise,
                   entries.py,    textnorm.py)   stories,       leases,        render.py)
                   dedupe.py)                    matches)       retries)

``pipeline.py`` runs one poll cycle through those steps, ``daemon.py`` schedules
cycles and deliveries with APScheduler, ``cli.py`` is the click layer over all of it,
and ``config.py`` loads and validates ``config.yaml``. The pure modules (textnorm,
query, matcher, entries, dedupe, render) import no database, network or scheduler code.
"""

__version__ = "0.1.0"
