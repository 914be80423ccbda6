"""The configuration: loading and validating ``config.yaml``, editing it in place, OPML.

Owns: the pydantic model and loader (``model``), round-trip editing that keeps comments
(``edit``), OPML import and export (``opml``).
May import: ``monitor.errors``, ``monitor.matching``, ``monitor.ingest``, ``monitor.delivery``:
the config is validated against their vocabularies (queries, templates, schedules).
"""
