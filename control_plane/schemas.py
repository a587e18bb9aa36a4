"""Pydantic building blocks shared by every domain's request and response schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

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


if TYPE_CHECKING:
    from fastapi import Query

    Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")]
    After = Annotated[
        uuid.UUID | None, Query(description="Return objects after this id (from `next_after`).")
    ]


def __getattr__(name: str) -> Any:
    """``Limit`` and ``After`` (route parameters) are made on first use: FastAPI is a quarter
    of a second to import, and the CLI loads these schemas without needing it."""
    if name not in ("Limit", "After"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from fastapi import Query

    made = {
        "Limit": Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")],
        "After": Annotated[
            uuid.UUID | None,
            Query(description="Return objects after this id (from `next_after`)."),
        ],
    }
    globals().update(made)
    return made[name]


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
