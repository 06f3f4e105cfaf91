"""Stateful property test of the supervisor's restart intensity and backoff."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.supervisor.watcher import RestartBudget


class RestartBudgetMachine(RuleBasedStateMachine):
    """Drive exits and lives at arbitrary times; compare with a plain model of OTP intensity."""

    @initialize(
        max_restarts=st.integers(0, 6),
        period=st.floats(0.5, 100),
        initial=st.floats(0.001, 1),
        cap=st.floats(0.001, 30),
    )
    def start(self, max_restarts: int, period: float, initial: float, cap: float) -> None:
        self.budget = RestartBudget(max_restarts, period, initial, cap)
        self.now = 0.0
        self.granted: list[float] = []
        self.since_live = 0
        self.failed = False

    @rule(dt=st.floats(0, 50))
    def exit(self, dt: float) -> None:
        if self.failed:
            return
        self.now += dt
        backoff = self.budget.on_exit(self.now)
        window = [t for t in self.granted if self.now - t <= self.budget.period_s]
        if len(window) >= self.budget.max_restarts:
            assert backoff is None, "restart granted beyond the intensity"
            self.failed = True
            return
        assert backoff is not None, "restart refused within the intensity"
        expected = min(
            self.budget.backoff_max_s, self.budget.backoff_initial_s * 2**self.since_live
        )
        assert abs(backoff - expected) < 1e-9
        self.granted.append(self.now)
        self.since_live += 1

    @rule()
    def live(self) -> None:
        self.budget.on_live()
        self.since_live = 0

    @invariant()
    def never_more_than_max_restarts_in_any_period(self) -> None:
        if not hasattr(self, "granted"):
            return
        for i, start in enumerate(self.granted):
            inside = [t for t in self.granted[i:] if t - start <= self.budget.period_s]
            assert len(inside) <= self.budget.max_restarts


TestRestartBudget = RestartBudgetMachine.TestCase
TestRestartBudget.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
