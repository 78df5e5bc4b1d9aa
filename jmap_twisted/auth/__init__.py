"""
Authentication with twisted.cred.

- :mod:`~jmap_twisted.auth.passwords`: password hashing (scrypt) and bearer
  token generation and hashing.
- :mod:`~jmap_twisted.auth.checkers`: credentials checkers for
  ``Authorization: Basic`` and ``Bearer`` against the
  :class:`~jmap_twisted.interfaces.IDirectory`.
- :mod:`~jmap_twisted.auth.throttle`: the bounded password hashing queue
  and the limits on failed logins per client address and username.
- :mod:`~jmap_twisted.auth.oidc`: OpenID Connect bearer tokens (the
  ``oidc`` extra): the checker of ``Bearer`` when providers are
  configured, built on :mod:`~jmap_twisted.auth.oidc_providers`
  (discovery, key sets, JWT verification),
  :mod:`~jmap_twisted.auth.introspection` (opaque tokens, RFC 7662) and
  :mod:`~jmap_twisted.auth.oidc_http` (bounded requests to providers).
- :mod:`~jmap_twisted.auth.portal`: the portal telling the server's
  metrics of every login, by credentials scheme and outcome.
- :mod:`~jmap_twisted.auth.realm`: the realm returning an
  :class:`~jmap_twisted.interfaces.IPrincipal` avatar with the user's
  accounts.
"""
