"""Quiet hours: a channel's daily window (in its own time zone) when it is not notified."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time  # before start: the window spans midnight
    time_zone: str
    critical_passes: bool

    def covers(self, now: datetime, severity: str) -> bool:
        """True when a message of ``severity`` at ``now`` must not be sent."""
        if self.critical_passes and severity == "critical":
            return False
        local = now.astimezone(ZoneInfo(self.time_zone)).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "time_zone": self.time_zone,
            "critical_passes": self.critical_passes,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> QuietHours:
        return cls(
            start=time.fromisoformat(str(data["start"])),
            end=time.fromisoformat(str(data["end"])),
            time_zone=str(data["time_zone"]),
            critical_passes=bool(data.get("critical_passes", True)),
        )
