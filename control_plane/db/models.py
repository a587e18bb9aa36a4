"""Imports every model so the metadata is complete (Alembic, tenancy registry)."""

from control_plane.alerts.models import (
    AlertChannel,
    AlertDelivery,
    AlertDeliveryAttempt,
    AlertNotification,
    AlertNotificationIncident,
    EscalationPolicy,
)
from control_plane.api_keys.models import ApiKey
from control_plane.audit import capture  # noqa: F401  (its session hooks record changes)
from control_plane.audit.models import AuditEvent
from control_plane.backups.models import (
    BackupPolicy,
    BackupSnapshot,
    ServerRecovery,
    WorkspaceBackupPolicy,
)
from control_plane.commands.models import Command
from control_plane.costs.models import (
    Budget,
    BudgetAlert,
    InvoiceLine,
    MeterReading,
    MeterSpan,
    Price,
    ProviderInvoice,
)
from control_plane.db.base import Base
from control_plane.db.rounds import PeriodicRound
from control_plane.dns.models import DnsCheck, DnsProvider, DomainDns
from control_plane.dnsbl.models import DelistRequest, DnsblCheck, DnsblResult, DnsblSubject
from control_plane.enrollment.models import JoinToken
from control_plane.health.models import HealthChange, HealthCheck, HealthSchedule
from control_plane.incidents.models import Incident, IncidentEvent, MaintenanceWindow, Silence
from control_plane.ips.models import IpAddress, IpEvent
from control_plane.ipswitch.models import IpSwitch, IpSwitchStep
from control_plane.mail.models import DkimKey, MailAlias, Mailbox, MailDomain
from control_plane.mailstats.models import MailCount, MailStatsReport
from control_plane.metrics.models import MetricRollup, MetricRollupHourly, MetricSample
from control_plane.provisioning.models import ServerEvent
from control_plane.resize.models import ServerResize, ServerResizeStep
from control_plane.servers.models import AgentCertificate, Server
from control_plane.tenants.models import Tenant
from control_plane.tls.models import Certificate
from control_plane.web.models import LoginFailure, WebSession
from control_plane.workspaces.models import Workspace

__all__ = [
    "AgentCertificate",
    "AlertChannel",
    "AlertDelivery",
    "AlertDeliveryAttempt",
    "AlertNotification",
    "AlertNotificationIncident",
    "ApiKey",
    "AuditEvent",
    "BackupPolicy",
    "BackupSnapshot",
    "Base",
    "Budget",
    "BudgetAlert",
    "Certificate",
    "Command",
    "DelistRequest",
    "DkimKey",
    "DnsCheck",
    "DnsProvider",
    "DnsblCheck",
    "DnsblResult",
    "DnsblSubject",
    "DomainDns",
    "EscalationPolicy",
    "HealthChange",
    "HealthCheck",
    "HealthSchedule",
    "Incident",
    "IncidentEvent",
    "InvoiceLine",
    "IpAddress",
    "IpEvent",
    "IpSwitch",
    "IpSwitchStep",
    "JoinToken",
    "LoginFailure",
    "MailAlias",
    "MailCount",
    "MailDomain",
    "MailStatsReport",
    "Mailbox",
    "MaintenanceWindow",
    "MeterReading",
    "MeterSpan",
    "MetricRollup",
    "MetricRollupHourly",
    "MetricSample",
    "PeriodicRound",
    "Price",
    "ProviderInvoice",
    "Server",
    "ServerEvent",
    "ServerRecovery",
    "ServerResize",
    "ServerResizeStep",
    "Silence",
    "Tenant",
    "WebSession",
    "Workspace",
    "WorkspaceBackupPolicy",
]
