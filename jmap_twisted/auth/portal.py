"""
The server's twisted.cred portal, telling an observer of every login
checked: which scheme of credentials, and whether they were accepted.

Every HTTP login (``Authorization: Basic`` or ``Bearer``, a push ticket, an
``access_token`` parameter) goes through :meth:`ObservedPortal.login`, so
this is where authentications are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from jmap_twisted.auth.throttle import LoginRefused
from jmap_twisted.interfaces import IBearerToken

#: Told of one login checked: its scheme (see :func:`scheme_of`) and
#: whether it was accepted.
LoginObserver = Callable[[str, bool], None]


def scheme_of(credentials: ICredentials) -> str:
    """
    The scheme of credentials, as counted: ``basic`` for a username and
    password, ``oidc`` for a bearer token an OpenID Connect provider vouched
    for (or, refused, shaped like a JWT), ``bearer`` for any other bearer
    token, ``ticket`` for the rest (the portal's only other checker takes
    push tickets).
    """
    if IUsernamePassword.providedBy(credentials):
        return "basic"
    if IBearerToken.providedBy(credentials):
        origin = getattr(credentials, "origin", None)
        if origin is not None:
            return "oidc" if origin[0] == "oidc" else "bearer"
        return "oidc" if IBearerToken(credentials).token.count(".") == 2 else "bearer"
    return "ticket"


class ObservedPortal(Portal):
    """
    A portal that tells ``observe`` of each login it checks: accepted, or
    refused (wrong credentials, or a login refused unchecked by the
    throttle).  A login that fails for another reason (a store that cannot
    be read) is a server error, not a refusal, and is not told.

    :param observe: told, in the reactor's thread, once per login.
    """

    def __init__(
        self, realm: IRealm, checkers: Any = (), observe: LoginObserver | None = None
    ) -> None:
        super().__init__(realm, checkers)
        self.observe = observe

    def login(
        self, credentials: ICredentials, mind: object, *interfaces: Any
    ) -> Deferred[tuple[Any, object, Callable[[], None]]]:
        result = super().login(credentials, mind, *interfaces)
        observe = self.observe
        if observe is None:
            return result

        def accepted(login: tuple[Any, object, Callable[[], None]]) -> Any:
            observe(scheme_of(credentials), True)
            return login

        def refused(failure: Failure) -> Failure:
            if failure.check(UnauthorizedLogin, LoginRefused):
                observe(scheme_of(credentials), False)
            return failure

        return result.addCallbacks(accepted, refused)
