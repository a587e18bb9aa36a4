from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from control_plane.schemas import Finding, RequestModel, ResponseModel
from control_plane.servers.schemas import SshPassword, SshPrivateKey
from mailfleet import restic

HOUR, DAY = 3600, 86400
# Backends restic speaks (a local path is an absolute path).
SCHEMES = ("sftp:", "s3:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:")
_SNAPSHOT = re.compile(r"^[0-9a-f]{8,64}$")


# How the last check or drill ended: "unknown" when it could not run (timed out, cancelled,
# repository unreachable, locked, wrong password): it judged nothing. None: it never ran.
CheckState = Literal["ok", "failed", "unknown"]
_MAILBOX = re.compile(r"^[a-z0-9!#$%&'+=^_`{|}~.-]{1,64}@[a-z0-9.-]{1,253}$")


def _repository_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not (value.startswith("/") or value.startswith(SCHEMES)):
        raise ValueError(f"a restic repository: an absolute path or one of {', '.join(SCHEMES)}…")
    problem = restic.repository_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _env_name(name: str) -> str:
    if restic.refused_env([name]):
        raise ValueError(
            "not a backend credential restic documents; one of "
            + ", ".join(sorted(restic.BACKEND_ENV))
        )
    return name


def _env_value(value: str) -> str:
    if "\0" in value:
        raise ValueError("a value without NUL characters")
    return value


# Checked key by key, so a refusal names the variable: ``body.repository_env.PATH``.
BackendEnv = dict[
    Annotated[str, AfterValidator(_env_name)], Annotated[str, AfterValidator(_env_value)]
]


class Retention(RequestModel):
    """restic's ``--keep-*``: the newest snapshot of each of the last n hours, days, …"""

    hourly: int = Field(default=24, ge=0, le=10_000)
    daily: int = Field(default=30, ge=0, le=10_000)
    weekly: int = Field(default=12, ge=0, le=10_000)
    monthly: int = Field(default=12, ge=0, le=10_000)
    yearly: int = Field(default=0, ge=0, le=100)

    @model_validator(mode="after")
    def keeps_something(self) -> Retention:
        if not any((self.hourly, self.daily, self.weekly, self.monthly, self.yearly)):
            raise ValueError("a retention that keeps nothing would delete every snapshot")
        return self


class PolicyIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "repository_url": "s3:https://s3.example.net/backups/mx1",
                    "repository_env": {"AWS_ACCESS_KEY_ID": "…", "AWS_SECRET_ACCESS_KEY": "…"},
                    "offsite_url": "sftp:backup@offsite.example.org:/srv/restic/mx1",
                }
            ]
        }
    )

    repository_url: str = Field(min_length=2, max_length=1000)
    repository_env: BackendEnv | None = Field(
        default=None,
        description="Backend credentials, by the names restic documents (AWS_ACCESS_KEY_ID, "
        "B2_ACCOUNT_KEY, AZURE_ACCOUNT_KEY, OS_PASSWORD, …; no file paths, no PATH or "
        "LD_*). Kept in Vault; only names shown.",
    )
    repository_password: str | None = Field(
        default=None,
        min_length=16,
        max_length=1024,
        description="For an existing repository; generated (and kept in Vault) when omitted.",
    )
    offsite_url: str | None = Field(default=None, min_length=2, max_length=1000)
    offsite_env: BackendEnv | None = None
    offsite_password: str | None = Field(
        default=None, min_length=16, max_length=1024, description="For an existing repository."
    )
    paths: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Absolute paths on the server; empty: MailU's whole data root.",
    )
    enabled: bool = True
    interval_seconds: int = Field(default=HOUR, ge=300, le=7 * DAY, description="RPO.")
    retention: Retention = Field(default_factory=Retention)
    forget_interval_seconds: int = Field(default=DAY, ge=HOUR, le=30 * DAY)
    check_interval_seconds: int = Field(default=7 * DAY, ge=HOUR, le=90 * DAY)
    check_subsets: int = Field(
        default=12, ge=1, le=1000, description="Each check reads 1/n of the data, rotating."
    )
    drill_interval_seconds: int = Field(
        default=7 * DAY, ge=HOUR, le=90 * DAY, description="How often a restore drill runs."
    )
    drill_sample: int = Field(default=100, ge=1, le=10_000, description="Files per drill.")
    limit_upload_kib: int | None = Field(default=None, ge=64, le=10_000_000)

    _urls = field_validator("repository_url", "offsite_url")(_repository_url)

    @field_validator("paths")
    @classmethod
    def absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            problem = restic.readable_path_problem(path)
            if problem is not None:
                raise ValueError(f"{path!r}: {problem}")
        return value

    @model_validator(mode="after")
    def offsite_differs(self) -> PolicyIn:
        if self.offsite_url is not None and self.offsite_url == self.repository_url:
            raise ValueError("offsite_url must be another repository than repository_url")
        return self


class PolicyOut(ResponseModel):
    id: uuid.UUID
    server_id: uuid.UUID
    repository_url: str
    offsite_url: str | None
    env_names: list[str] = Field(description="Names of the stored backend credentials.")
    paths: list[str]
    enabled: bool
    interval_seconds: int
    retention: Retention
    forget_interval_seconds: int
    check_interval_seconds: int
    check_subsets: int
    drill_interval_seconds: int
    drill_sample: int
    limit_upload_kib: int | None
    next_backup_at: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    last_check_at: datetime | None
    last_check_error: str | None
    last_check_state: CheckState | None = Field(
        description="ok; failed (the repository is damaged); unknown: the check could not run; "
        "null: it never ran."
    )
    last_drill_at: datetime | None
    last_drill_error: str | None
    last_drill_state: CheckState | None = Field(
        description="ok; failed (restored files differ); unknown: the drill could not run; "
        "null: it never ran."
    )


class SnapshotOut(ResponseModel):
    short_id: str
    taken_at: datetime
    age_seconds: float
    data_added: int
    bytes_processed: int
    files: int
    duration_seconds: float
    offsite_copied: bool


class BackupsOut(ResponseModel):
    policy: PolicyOut | None
    findings: list[Finding]
    snapshots: list[SnapshotOut] = Field(description="Newest first.")


class RestoreIn(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"at": "2026-11-20T14:00:00Z", "target": "in_place"}]}
    )

    at: datetime | None = Field(
        default=None, description="Restore the state at this time (the newest snapshot before)."
    )
    snapshot: str | None = Field(default=None, description="Or a snapshot id.")
    target: str = Field(
        default="in_place",
        description="in_place (the previous state is kept aside until finished), or an "
        "absolute directory on the server.",
    )
    mailbox: str | None = Field(
        default=None, max_length=320, description="Restore only this mailbox (local@domain)."
    )

    @field_validator("snapshot")
    @classmethod
    def snapshot_id(cls, value: str | None) -> str | None:
        if value is not None and not _SNAPSHOT.match(value):
            raise ValueError("a snapshot id (hex)")
        return value

    @field_validator("target")
    @classmethod
    def target_kind(cls, value: str) -> str:
        if value == "in_place":
            return value
        problem = restic.writable_path_problem(value)
        if problem is not None:
            raise ValueError(f"in_place, or an absolute directory: {problem}")
        return value

    @field_validator("mailbox")
    @classmethod
    def mailbox_address(cls, value: str | None) -> str | None:
        """The address becomes a path and a restic ``--include`` pattern: no ``/``, no
        wildcards, no ``..``."""
        if value is None:
            return None
        address = value.strip().lower()
        if not _MAILBOX.match(address) or ".." in address or address.startswith("."):
            raise ValueError("an address local@domain")
        return address


class RestoreFinish(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"restore_id": "3f2a9c01d4e5b6a7", "keep": "restored"}]}
    )

    restore_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="From the restore's result.")
    keep: Literal["restored", "previous"]


class RecoverIn(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{}, {"at": "2026-11-20T14:00Z"}]})

    at: datetime | None = Field(
        default=None, description="The state at this time; default: the newest."
    )
    snapshot: str | None = Field(default=None, pattern=r"^[0-9a-f]{8,64}$")
    region: str | None = Field(default=None, max_length=64, description="Default: the old one's.")
    plan: str | None = Field(default=None, max_length=64, description="Default: the old one's.")
    # An adopted server (provider ssh) is recovered onto another machine the customer has,
    # adopted over SSH as ``POST /servers`` would: no provider rents one.
    address: str | None = Field(
        default=None,
        max_length=45,
        description="Adopted server (provider `ssh`): required, the IPv4 address of the "
        "machine to recover onto (MailFleet logs in as root on port 22 and installs the "
        "agent); with one of `ssh_private_key`, `ssh_password`.",
    )
    ssh_private_key: SshPrivateKey | None = None
    ssh_password: SshPassword | None = None


class RecoveryOut(ResponseModel):
    id: uuid.UUID
    old_server_id: uuid.UUID | None
    new_server_id: uuid.UUID | None
    snapshot: str
    state: str = Field(
        description="provisioning → restoring → finishing → (reconfiguring) → retiring → done, "
        "or failed"
    )
    started_at: datetime
    finished_at: datetime | None
    rto_seconds: float | None = Field(description="From the request to a serving new server.")
    error: str | None


SECRET_FIELDS = {"repository_password", "offsite_password", "repository_env", "offsite_env"}


class WorkspacePolicyOut(ResponseModel):
    workspace_id: uuid.UUID
    policy: dict[str, Any] = Field(
        description="What each server of the workspace gets ({server_id} filled in), without "
        "secrets."
    )
    env_names: list[str]
