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
    # Whose domain it is (a shared server's cost is split by it); defaults to the server's.
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(253))  # IDNA, lower case
    command_id: Mapped[uuid.UUID | None]


class DkimKey(IdMixin, TimestampMixin, TenantOwned, Base):
    """A domain's DKIM key for one selector (the private half is in Vault only).

    Its role comes from the server's selectors: the one MailU signs with, the next one
    (published ahead of a switch) or the retiring one (still published after a switch).
    """

    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector", name="uq_dkim_keys_selector"),)

    domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_domains.id", ondelete="CASCADE"), index=True
    )
    selector: Mapped[str] = mapped_column(String(63))
    public_key: Mapped[str] = mapped_column(Text)  # base64 SubjectPublicKeyInfo


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


class MailAlias(IdMixin, TimestampMixin, TenantOwned, Base):
    """An address that delivers to mailboxes of the same server (Mailu accepts only local
    users as alias destinations)."""

    __tablename__ = "mail_aliases"
    __table_args__ = (UniqueConstraint("address", name="uq_mail_aliases_address"),)

    domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_domains.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320))
    destinations: Mapped[str] = mapped_column(Text)  # addresses, one per line
    comment: Mapped[str] = mapped_column(String(255), default="")
    command_id: Mapped[uuid.UUID | None]
