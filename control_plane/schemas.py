"""Pydantic building blocks shared by every domain's request and response schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

# Printable text only: control characters (and NUL, which PostgreSQL rejects) never get stored.
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Description = Annotated[
    str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_after: uuid.UUID | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]
After = Annotated[
    uuid.UUID | None, Query(description="Return objects after this id (from `next_after`).")
]


FindingState = Literal["failing", "unknown"]


class Finding(ResponseModel):
    """Something a health check raises. ``failing``: it was checked, and it is wrong;
    ``unknown``: it could not be checked (a lookup or probe got no usable answer), which is
    neither ok nor a verdict: the message carries what the resolver or probe said."""

    severity: Literal["critical", "warning", "info"]
    code: str
    message: str
    state: FindingState = "failing"
    since: datetime | None = Field(default=None, description="When it began, when known.")
