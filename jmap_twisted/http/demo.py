# -*- test-case-name: tests.http.test_demo -*-
"""
``/demo/`` (``--demo``): the live-inbox page of :mod:`jmap_twisted.demo`,
a fixed set of static files served with exact content types, no sniffing
and a Content-Security-Policy that lets the page load only its own files
and connect only to this server (HTTP and its WebSocket).
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.util import redirectTo

from jmap_twisted.http.problem import write_status
from jmap_twisted.http.resources import base_url

if TYPE_CHECKING:
    from jmap_twisted.server import JMAPServer

#: What is served, by path below ``/demo/``: the package file and its type.
#: Nothing else is: no listing, and no path reaches another file.
FILES = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"index.html": ("index.html", b"text/html; charset=utf-8"),
    b"demo.js": ("demo.js", b"text/javascript; charset=utf-8"),
    b"demo.css": ("demo.css", b"text/css; charset=utf-8"),
}


def content_security_policy(base: str) -> bytes:
    """
    The page's policy, for a server whose pages are at ``base`` (scheme
    and authority): scripts, styles and images from the page's own origin
    only, and connections to it and to its WebSocket origin (``ws:`` or
    ``wss:``, which ``'self'`` does not cover in every browser).  No
    inline script, no framing, no form posted anywhere.
    """
    socket_origin = "wss" + base[5:] if base.startswith("https:") else "ws" + base[4:]
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self' {socket_origin}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ).encode("ascii")


class DemoResource(Resource):
    """
    ``GET /demo/`` and its two assets; ``/demo`` redirects to ``/demo/``
    (the page's URLs are relative to it).
    """

    isLeaf = True

    def __init__(self, server: JMAPServer) -> None:
        super().__init__()
        self.jmap = server
        package = files("jmap_twisted.demo")
        self._files = {
            path: (package.joinpath(name).read_bytes(), media_type)
            for path, (name, media_type) in FILES.items()
        }

    def render(self, request: Request) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            write_status(request, 405, "Method not allowed.")
            return NOT_DONE_YET
        if not request.postpath:
            # Relative, so that it holds wherever the page is mounted.
            here = request.prepath[-1] if request.prepath else b"demo"
            return redirectTo(here + b"/", request)
        found = self._files.get(b"/".join(request.postpath))
        if found is None:
            write_status(request, 404, "No such file.")
            return NOT_DONE_YET
        try:
            base = base_url(self.jmap, request)
        except ValueError as e:
            write_status(request, 400, str(e))
            return NOT_DONE_YET
        body, media_type = found
        request.setHeader(b"Content-Type", media_type)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Content-Security-Policy", content_security_policy(base))
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"Cache-Control", b"no-cache")
        return body
