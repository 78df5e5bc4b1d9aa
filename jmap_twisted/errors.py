"""
The JMAP error taxonomy (RFC 8620 §3.6) as one exception hierarchy.

Each transport maps these to its wire form in exactly one place:
:mod:`jmap_twisted.http.problem` for HTTP problem details.
"""

from __future__ import annotations

from typing import Any

ERROR_URN = "urn:ietf:params:jmap:error:"


class JMAPError(Exception):
    """
    Base of every error the server reports to a client.
    """


class RequestLevelError(JMAPError):
    """
    A request-level error (RFC 8620 §3.6.1), reported as RFC 7807 problem
    details.

    :ivar type: the full error type URI.
    :ivar status: HTTP status code.
    :ivar detail: human-readable explanation.
    :ivar extra: further members of the problem object (e.g. ``limit``).
    """

    type_name = ""
    status = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return ERROR_URN + self.type_name

    def to_problem(self) -> dict[str, Any]:
        """
        The RFC 7807 problem details object.
        """
        return {"type": self.type, "status": self.status, "detail": self.detail, **self.extra}


class UnknownCapability(RequestLevelError):
    type_name = "unknownCapability"


class NotJSON(RequestLevelError):
    type_name = "notJSON"


class NotRequest(RequestLevelError):
    type_name = "notRequest"


class LimitExceeded(RequestLevelError):
    """
    A request-level limit was exceeded; ``limit`` names it as in the session.
    """

    type_name = "limit"

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(detail, limit=limit)
        self.limit = limit


class PushUnavailable(RequestLevelError):
    """
    Push was asked for (``WebSocketPushEnable``) where the server cannot
    deliver it: its life cycle has not been started.
    """

    type_name = "serverUnavailable"
    status = 503


class MethodError(JMAPError):
    """
    A method-level error (RFC 8620 §3.6.2): the method call's response is
    ``["error", {"type": …, …}, callId]``.
    """

    type = "serverFail"

    def __init__(self, description: str | None = None, **extra: Any) -> None:
        super().__init__(description or self.type)
        self.description = description
        self.extra = extra

    def to_arguments(self) -> dict[str, Any]:
        """
        The arguments of the ``error`` response.
        """
        args: dict[str, Any] = {"type": self.type}
        if self.description is not None:
            args["description"] = self.description
        args.update(self.extra)
        return args


def _method_error(name: str, doc: str) -> type[MethodError]:
    return type(name[0].upper() + name[1:], (MethodError,), {"type": name, "__doc__": doc})


ServerUnavailable = _method_error("serverUnavailable", "Temporary internal error; retry later.")
ServerFail = _method_error("serverFail", "Unexpected error; the server logged it.")
ServerPartialFail = _method_error("serverPartialFail", "Some, not all, changes were made.")
UnknownMethod = _method_error("unknownMethod", "No such method, or not enabled by ``using``.")
InvalidArguments = _method_error("invalidArguments", "Wrong argument type, missing or unknown.")
InvalidResultReference = _method_error(
    "invalidResultReference", "A result reference could not be resolved."
)
Forbidden = _method_error("forbidden", "The user may not call this method.")
AccountNotFound = _method_error("accountNotFound", "No such account for this user.")
AccountNotSupportedByMethod = _method_error(
    "accountNotSupportedByMethod", "The account does not support this method."
)
AccountReadOnly = _method_error("accountReadOnly", "The account is read-only.")
RequestTooLarge = _method_error("requestTooLarge", "Too many objects in one call.")
CannotCalculateChanges = _method_error(
    "cannotCalculateChanges", "The server cannot compute changes since that state."
)
StateMismatch = _method_error("stateMismatch", "``ifInState`` does not match.")
UnsupportedSort = _method_error("unsupportedSort", "A sort property is not supported.")
UnsupportedFilter = _method_error("unsupportedFilter", "A filter is not supported.")
AnchorNotFound = _method_error("anchorNotFound", "The anchor id is not in the results.")
FromAccountNotFound = _method_error("fromAccountNotFound", "No such fromAccountId.")
FromAccountNotSupportedByMethod = _method_error(
    "fromAccountNotSupportedByMethod", "The fromAccount does not support this method."
)
TooManyChanges = _method_error("tooManyChanges", "More changes than maxChanges allows.")


class DirectoryError(Exception):
    """
    Base of errors raised by :class:`jmap_twisted.interfaces.IDirectory`.
    """


class UserExists(DirectoryError):
    """
    The username is already taken.
    """


class NoSuchUser(DirectoryError):
    """
    No user has that name or id.
    """


class NoSuchAccount(DirectoryError):
    """
    No account has that id.
    """


# -- storage -----------------------------------------------------------------


class DatabaseError(Exception):
    """
    Base of the errors a database raises itself.
    """


class DiskFull(DatabaseError):
    """
    The disk holding the database is full: the transaction rolled back.
    Transactions that only remove data can still commit, using the space
    the database keeps in reserve.  Method calls answer
    ``serverUnavailable``; deliveries are deferred.
    """


class OverQuota(Exception):
    """
    Storing an email would take its account past a limit of its quota
    (:class:`~jmap_twisted.records.AccountQuota`); nothing was stored.
    Method calls answer the ``overQuota`` SetError for that email;
    deliveries are deferred (``452 4.2.2``).

    :ivar resource: the limit reached: ``"octets"`` (storage) or
        ``"count"`` (messages), as RFC 9425 names resource types.
    :ivar limit: that limit.
    :ivar used: how much of it the account uses.
    """

    def __init__(self, resource: str, limit: int, used: int) -> None:
        unit = "octets" if resource == "octets" else "messages"
        super().__init__(f"over quota: {used} of {limit} {unit} used")
        self.resource = resource
        self.limit = limit
        self.used = used


class QueryTimeout(DatabaseError):
    """
    A read transaction ran past its time budget and was stopped; nothing
    was changed.

    :ivar budget: the budget, in seconds.
    """

    def __init__(self, budget: float) -> None:
        super().__init__(f"the read took longer than {budget:g} seconds and was stopped")
        self.budget = budget
