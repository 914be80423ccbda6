"""Delivery: from a claimed outbox row to a message on a channel.

Owns: the delivery planner (``routing``: digests, quiet hours, rate limits), rendering
with templates (``render``, ``templates/``), the transports (``notify``: Apprise).
May import: ``monitor.errors``, ``monitor.backoff``, ``monitor.matching``, ``monitor.ingest``
values. Never config, storage or app: the drain loop lives in ``monitor.app``.
"""
