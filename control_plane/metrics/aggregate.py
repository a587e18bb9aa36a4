"""count/sum/min/max that merge: one sample, a minute of them, or many minutes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Aggregate:
    count: int
    sum: float
    min: float
    max: float

    @classmethod
    def of(cls, value: float) -> Aggregate:
        return cls(1, value, value, value)

    def merge(self, other: Aggregate) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def avg(self) -> float:
        return self.sum / self.count
