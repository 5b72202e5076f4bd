"""What every chaos test asserts about a scenario's outcome."""

from __future__ import annotations

from bench.trial import Outcome
from tests.support import TIMEOUT_FACTOR

# The bound on the crash-to-confirmation window (the outbox and job leases were 60 s).
RECOVERY_S = 10.0 * TIMEOUT_FACTOR


def assert_kept(outcome: Outcome, *, recovery: float | None = RECOVERY_S) -> None:
    """Every invariant count is 0, and (when bounded) the system settled within `recovery` s."""
    broken = {name: n for name, n in outcome.violations().items() if n}
    assert not broken, f"{outcome.scenario}: {broken} ({outcome.notes})"
    if recovery is not None:
        assert outcome.recovery_s is not None, f"{outcome.scenario}: never settled ({outcome.notes})"
        assert outcome.recovery_s <= recovery, f"{outcome.scenario}: settled after {outcome.recovery_s:.1f} s"
