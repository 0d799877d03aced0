"""Capped exponential backoff with jitter: the one implementation every retry loop uses.

Celery task retries (:mod:`worker.tasks.outcomes`), the Orthanc plugin's spool (:mod:`plugins.orthanc.
dispatcher`) and the study tracker's hand-off (:mod:`dicom_node.assembly.tracker`) all wait
``min(max_s, base_s × 2^(attempt-1))``, jittered, so a peer that is down for a while is probed
ever less often and many failures together do not retry in lock-step ("Exponential Backoff and
Jitter", AWS Architecture Blog, 2015). Pure functions; the random source is injected so tests are
repeatable.
"""

from __future__ import annotations

import random
from typing import Literal

JitterMode = Literal["full", "equal", "decorrelated", "none"]


def backoff_cap_s(attempt: int, *, base_s: float, max_s: float) -> float:
    """The ceiling for retry number ``attempt`` (1-based): ``min(max_s, base_s * 2**(attempt-1))``."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if base_s <= 0 or max_s < base_s:
        raise ValueError("need 0 < base_s <= max_s")
    # 2**1000 overflows float multiplication long before it matters: clamp the exponent.
    exponent = min(attempt - 1, 1000)
    return min(max_s, base_s * 2.0**exponent) if exponent < 1000 else max_s


def backoff_delay_s(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    jitter: random.Random,
    mode: JitterMode = "full",
    previous_s: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    - ``full``: uniform in ``[0, cap]`` (cap from :func:`backoff_cap_s`): spreads retries most.
    - ``equal``: the cap ±25 %, capped at ``max_s``: never much sooner than the schedule (for
      loops where an early retry is wasted work, e.g. probing a broker that is down).
    - ``decorrelated``: uniform in ``[base_s, 3 × previous]``, capped at ``max_s``; pass the
      previous delay (``None`` for the first retry, taken as ``base_s``).
    - ``none``: exactly the cap (deterministic schedules, tests).

    Always within ``[0, max_s]``.
    """
    cap = backoff_cap_s(attempt, base_s=base_s, max_s=max_s)
    if mode == "none":
        return cap
    if mode == "full":
        return jitter.uniform(0.0, cap)
    if mode == "equal":
        return min(max_s, cap * jitter.uniform(0.75, 1.25))
    prev = base_s if previous_s is None else max(previous_s, base_s)
    return min(max_s, jitter.uniform(base_s, prev * 3.0))
