"""Domain errors raised by service code; the API layer turns them into problem details."""

from __future__ import annotations


class MailFleetError(Exception):
    """Base of every error a caller is meant to see."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(MailFleetError):
    """Also what another tenant's object looks like: never 403, never its data."""

    status = 404
    title = "Not found"

    def __init__(self, resource: str, ident: object, *, field: str | None = None) -> None:
        super().__init__(f"{resource} {ident} not found", field=field)


class Conflict(MailFleetError):
    status = 409
    title = "Conflict"


class InvalidInput(MailFleetError):
    status = 422
    title = "Invalid input"


class Unauthorized(MailFleetError):
    status = 401
    title = "Unauthorized"


class Forbidden(MailFleetError):
    status = 403
    title = "Forbidden"


class Unavailable(MailFleetError):
    status = 503
    title = "Service unavailable"
