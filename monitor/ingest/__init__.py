"""Ingest: from a feed URL to the decision of what a poll changes.

Owns: HTTP fetching and URL redaction (``fetch``), feed parsing (``formats``, one module
per source format, run in worker processes by ``pool``), entry
normalisation (``entries``) and dedupe keys (``dedupe``), the feed scheduling policy
(``schedule``), the decision of what a batch of polls writes (``decide``).
May import: ``monitor.errors``, ``monitor.backoff``, ``monitor.matching``. Never config,
storage, delivery or app: settings arrive as plain values, and storage applies what ingest
decides.
"""
