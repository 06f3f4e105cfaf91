"""The analysis rate, lowered while the machine is busy and raised again once it is not."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Governor:
    """Halve the rate while the machine's CPU is above ``high`` percent, down to ``min_hz``;
    climb back by half again while it is below ``low``. ``reason`` says why it is lowered."""

    rate_hz: float  # the configured rate
    min_hz: float = 0.5
    high: float = 85.0
    low: float = 60.0
    current: float = 0.0
    reason: str = ""

    def __post_init__(self) -> None:
        self.min_hz = min(self.min_hz, self.rate_hz)
        self.current = self.current or self.rate_hz

    def update(self, cpu_percent: float) -> float:
        """The rate to use after a CPU reading (percent of the whole machine)."""
        if cpu_percent > self.high:
            self.current = max(self.min_hz, self.current / 2)
            self.reason = f"cpu {cpu_percent:.0f}%" if self.current < self.rate_hz else ""
        elif cpu_percent < self.low and self.current < self.rate_hz:
            self.current = min(self.rate_hz, self.current * 1.5)
            if self.current >= self.rate_hz:
                self.reason = ""
        return self.current
