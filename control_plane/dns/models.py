"""DNS providers a tenant publishes through (secrets in Vault) and each domain's DNS settings."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class DnsProvider(IdMixin, TimestampMixin, TenantOwned, Base):
    """Where a tenant's zones are served: an RFC 2136 server (BIND, Knot, PowerDNS) with a
    TSIG key, Cloudflare or Route53. ``settings`` holds the non-secret part as JSON; the
    TSIG secret, API token or access keys are in Vault at ``dns/<tenant>/<provider>``."""

    __tablename__ = "dns_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_dns_providers_name"),)

    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[str] = mapped_column(Text, default="{}")


class DomainDns(IdMixin, TimestampMixin, TenantOwned, Base):
    """How a mail domain's records are published: provider, zone, DMARC stage and reports."""

    __tablename__ = "domain_dns"
    __table_args__ = (UniqueConstraint("domain_id", name="uq_domain_dns_domain"),)

    domain_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mail_domains.id", ondelete="CASCADE"))
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dns_providers.id", ondelete="RESTRICT"), index=True
    )
    zone: Mapped[str] = mapped_column(String(253))
    dmarc_policy: Mapped[str] = mapped_column(String(16), default="none")
    dmarc_policy_since: Mapped[datetime | None]
    dmarc_step_days: Mapped[int] = mapped_column(default=0)  # 0: the policy moves by hand
    dmarc_rua: Mapped[str] = mapped_column(Text, default="")  # addresses, one per line
    tls_rpt_rua: Mapped[str] = mapped_column(Text, default="")
    spf_includes: Mapped[str] = mapped_column(Text, default="")
    caa_issuers: Mapped[str] = mapped_column(Text, default="")  # CAs allowed, one per line
    mta_sts_mode: Mapped[str] = mapped_column(String(16), default="none")
    published: Mapped[str] = mapped_column(Text, default="[]")  # MailFleet's values, as applied


class DnsCheck(IdMixin, TenantOwned, Base):
    """One propagation check of a domain and its report (the history of "Test DNS")."""

    __tablename__ = "dns_checks"

    domain_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_domains.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    propagated: Mapped[bool]
    report: Mapped[str] = mapped_column(Text)  # JSON
