"""Mail domains and mailboxes. Their MailU side is changed by agent commands; a row's
``command_id`` is the latest such change, and its state is read from that command."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class MailDomain(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "mail_domains"
    __table_args__ = (UniqueConstraint("name", name="uq_mail_domains_name"),)

    server_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(253))  # IDNA, lower case
    dkim_selector: Mapped[str] = mapped_column(String(63))
    dkim_public_key: Mapped[str] = mapped_column(Text)  # base64 SubjectPublicKeyInfo
    command_id: Mapped[uuid.UUID | None]


class Mailbox(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("address", name="uq_mailboxes_address"),)

    domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_domains.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320))
    quota_bytes: Mapped[int] = mapped_column(BigInteger)
    enabled: Mapped[bool]
    displayed_name: Mapped[str] = mapped_column(String(160), default="")
    command_id: Mapped[uuid.UUID | None]
    credentials_taken_at: Mapped[datetime | None]
