"""Exponential backoff with jitter, shared by failing feeds and failing deliveries.

Full jitter on the top half ("equal jitter"): the delay is drawn uniformly from
``[d/2, d]`` where ``d = min(cap, base * 2**(attempt-1))``. Half of the delay is kept
so a failing feed is never hammered; the random half spreads feeds of one host (and the
alerts of one outage) so they do not all come back at the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt number ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
    if attempt < 1:
        return 0.0
    exponent = min(attempt - 1, 62)  # 2**62 already dwarfs any cap; avoids float overflow
    delay = min(cap, base * (2.0**exponent))
    return delay / 2 + (delay / 2) * rand()
