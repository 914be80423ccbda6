"""Delivery: from a claimed outbox row to a message on a channel.

Owns: the delivery planner (``routing``: digests, quiet hours, rate limits), the channel
flavours and the Channel protocol (``channels``), rendering with templates (``render``,
``templates/``), target URLs with their secrets masked (``masking``), the transports
(``notify``: Apprise channels).
May import: ``monitor.errors``, ``monitor.backoff``, ``monitor.matching``, ``monitor.ingest``
values. Never config, storage or app: the drain loop lives in ``monitor.app``.
"""
