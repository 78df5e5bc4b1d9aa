"""
Writing JSON and RFC 7807 problem-details responses: the one place where
request-level errors meet HTTP.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from jmap_twisted.core import jsonio
from jmap_twisted.errors import RequestLevelError


def write_json(request: IRequest, value: Any, status: int = 200) -> None:
    """
    Finish the request with a JSON body.
    """
    body = jsonio.dumps(value)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


def write_problem(request: IRequest, error: RequestLevelError, status: int | None = None) -> None:
    """
    Finish the request with the problem details of a request-level error.
    """
    problem = error.to_problem()
    if status is not None:
        problem["status"] = status
    body = jsonio.dumps(problem)
    request.setResponseCode(problem["status"])
    request.setHeader(b"Content-Type", b"application/problem+json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()


def write_status(request: IRequest, status: int, detail: str) -> None:
    """
    Finish the request with a plain problem for an HTTP-level failure (not
    found, wrong method, unauthorised).
    """
    body = jsonio.dumps({"type": "about:blank", "status": status, "detail": detail})
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/problem+json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    request.write(body)
    request.finish()
