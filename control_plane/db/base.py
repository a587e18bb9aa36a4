"""Declarative base and column types shared by every model.

Both SQLite and PostgreSQL run every query, so the types here hide their differences:
timestamps always come back timezone-aware in UTC, ids are UUIDv7 (time-ordered, so
keyset pagination by id follows creation order and B-tree inserts stay local).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, ForeignKey, MetaData, Numeric, String, Uuid, func
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from control_plane.db.tenancy import TenantScoped

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_id_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)  # (milliseconds, 74-bit counter) of the last id made


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits.

    Monotonic within the process (RFC 9562 §6.2, method 3): an id made in the same
    millisecond as the previous one, or while the clock stepped back, takes the previous
    one's time and its random part plus a random increment. Readers that follow a history
    "after the last id seen" (event streams) would otherwise miss an event that sorted
    before its predecessor.
    """
    global _last
    millis = time.time_ns() // 1_000_000 & (2**48 - 1)
    counter = int.from_bytes(os.urandom(10), "big") >> 6  # 74 bits
    with _id_lock:
        last_millis, last_counter = _last
        if millis <= last_millis:
            millis = last_millis
            counter = last_counter + 1 + (int.from_bytes(os.urandom(4), "big") >> 8)
            if counter >= 2**74:  # counter exhausted: borrow the next millisecond
                millis, counter = millis + 1, counter - 2**74
        _last = (millis, counter)
    rand_a, rand_b = counter >> 62, counter & (2**62 - 1)
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | rand_a << 64 | 0x2 << 62 | rand_b)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime(), uuid.UUID: Uuid()}


class Money(TypeDecorator[Decimal]):
    """An exact amount (prices): NUMERIC(12, 2) on PostgreSQL, its text on SQLite (which
    has no exact decimal type and would go through a float). ``scale`` 6 holds rates (a
    GB-month of backup storage at 0.0059) and unrounded ledger amounts."""

    impl = String(32)
    cache_ok = True

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(10 + self.scale, self.scale, asdecimal=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class TenantOwned(TenantScoped):
    """Marks a row as belonging to one tenant.

    Tenant-scoped sessions filter every ORM query on ``tenant_id`` automatically and, on
    PostgreSQL, row-level security enforces the same rule inside the database.
    """

    @declared_attr
    def tenant_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
