"""What the command line and the web page do, done once: the service layer.

Every ``news-monitor`` command and every page of the web app is presentation only: it
parses its input, calls ONE function of these modules and renders the frozen value it
returns. So a backtest, a live preview, a watchlist saved with a backfill, an OPML
import or a story search gives the same answer wherever it is asked.

* :mod:`~monitor.app.services.backtests`: backtests and live previews;
* :mod:`~monitor.app.services.watchlists`: watchlist edits, backfills and views;
* :mod:`~monitor.app.services.feeds`: feed status and edits, OPML;
* :mod:`~monitor.app.services.stories`: latest alerts, search, story detail;
* :mod:`~monitor.app.services.clusters`: event clusters, a story's cluster, re-clustering;
* :mod:`~monitor.app.services.setup`: ``init``'s config file and test send;
* :mod:`~monitor.app.services.common`: progress, the result of an edit, unknown names,
  the story clusterer of a config.

Contract of each function: plain arguments in (a config path or a parsed
:class:`~monitor.config.model.Config`, a :class:`~monitor.storage.store.Store`, strings
and numbers); a frozen dataclass out; every refusal a
:class:`~monitor.errors.MonitorError` whose message a person can act on.
"""
