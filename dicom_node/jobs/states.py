"""The job state machine, in one place.

::

    queued ──▶ running ──▶ encoded ──▶ delivering ──▶ delivered
      │  ▲        │  │         │            │  │           │
      │  └────────┘  │         │            │  │           └──▶ superseded
      │   (transient │         ▼            ▼  ▼
      │    retry)    └──▶ failed ◀──────────┘  dead
      ├──▶ skipped        │   ▲                 │
      └──▶ superseded     └───┴─ requeue ───────┘  (failed/dead ──▶ queued | delivering)
                          (queued/failed/dead ──▶ skipped: cancelled by an operator)

- ``running → queued``: a transient error; the task is retried with backoff.
- ``failed``/``dead`` are not final: an operator may requeue (``ctnode jobs retry``), back to
  ``queued`` (run the model again) or ``delivering`` (send the stored results again). Every such
  move is an audited transition with its reason.
- ``queued``/``failed``/``dead → skipped``: an operator cancels the job (``worker.node.requeue.cancel``);
  the reason says who and why. No separate "cancelled" state: like a skip, nothing runs and
  nothing is delivered; a queued message still on the broker finds the job unclaimable.
- ``delivered``, ``skipped`` and ``superseded`` are final, except that a delivered job's results
  may later be superseded by a job on a fuller study (late-series policy).
- A transition to the state a job is already in is a no-op (at-least-once task delivery means the
  same step can be reported twice); :func:`check_transition` says so by returning ``False``.
"""

from __future__ import annotations

from enum import StrEnum

from dicom_node.contracts import JobState
from dicom_node.errors import PermanentError

S = JobState

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.SKIPPED, S.SUPERSEDED, S.FAILED, S.DEAD}),
    S.RUNNING: frozenset({S.ENCODED, S.QUEUED, S.FAILED, S.DEAD, S.SUPERSEDED}),
    S.ENCODED: frozenset({S.DELIVERING, S.DELIVERED, S.FAILED, S.DEAD, S.SUPERSEDED}),
    S.DELIVERING: frozenset({S.DELIVERED, S.FAILED, S.DEAD, S.SUPERSEDED}),
    S.DELIVERED: frozenset({S.SUPERSEDED}),
    S.FAILED: frozenset({S.QUEUED, S.DELIVERING, S.DEAD, S.SUPERSEDED, S.SKIPPED}),
    S.DEAD: frozenset({S.QUEUED, S.DELIVERING, S.SUPERSEDED, S.SKIPPED}),
    S.SKIPPED: frozenset(),
    S.SUPERSEDED: frozenset(),
}

# States from which a worker may start (or restart) the model: see JobStore.claim.
CLAIMABLE: frozenset[JobState] = frozenset({S.QUEUED})
# States in which the model has produced nothing deliverable and nothing is running.
FINAL: frozenset[JobState] = frozenset({S.DELIVERED, S.SKIPPED, S.SUPERSEDED})
# States an operator may requeue from.
REQUEUEABLE: frozenset[JobState] = frozenset({S.FAILED, S.DEAD})
# States an operator may cancel from (→ SKIPPED with the reason).
CANCELLABLE: frozenset[JobState] = frozenset({S.QUEUED, S.FAILED, S.DEAD})
# States in which a job's results count for its study (not superseded, not abandoned).
ACTIVE: frozenset[JobState] = frozenset({S.QUEUED, S.RUNNING, S.ENCODED, S.DELIVERING, S.DELIVERED})


class InvalidTransition(PermanentError):
    """A state change the machine forbids (e.g. delivered → running)."""

    def __init__(self, job_id: str, from_state: JobState, to_state: JobState) -> None:
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        super().__init__(f"job {job_id}: transition {from_state.value} → {to_state.value} not allowed")


def check_transition(job_id: str, from_state: JobState, to_state: JobState) -> bool:
    """True when the move is allowed and changes something; False for a same-state no-op.

    Raises :class:`InvalidTransition` for anything else.
    """
    if from_state == to_state:
        return False
    if to_state not in ALLOWED_TRANSITIONS[from_state]:
        raise InvalidTransition(job_id, from_state, to_state)
    return True


class DeliveryState(StrEnum):
    """State of one job's delivery to one destination (``deliveries`` table)."""

    PENDING = "pending"  # not attempted yet, or requeued
    SENDING = "sending"  # an attempt is under way
    DELIVERED = "delivered"  # every object accepted (warnings recorded)
    RETRYING = "retrying"  # the last attempt failed transiently; a retry is scheduled
    FAILED = "failed"  # a permanent rejection; operator action needed
    DEAD = "dead"  # retries exhausted


def job_state_after_deliveries(states: list[DeliveryState]) -> JobState | None:
    """The job state that the set of its destinations' delivery states implies, if settled.

    All delivered → DELIVERED; any DEAD → DEAD; any FAILED (and none still in flight) → FAILED;
    otherwise None (still delivering). A job with no destination is DELIVERED (nothing to send).
    """
    if all(s == DeliveryState.DELIVERED for s in states):
        return JobState.DELIVERED
    in_flight = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.RETRYING)
    if any(s in in_flight for s in states):
        return None
    if any(s == DeliveryState.DEAD for s in states):
        return JobState.DEAD
    return JobState.FAILED
