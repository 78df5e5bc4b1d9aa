"""
Authentication with twisted.cred.

- :mod:`~jmap_twisted.auth.passwords`: password hashing (scrypt) and bearer
  token generation and hashing.
- :mod:`~jmap_twisted.auth.checkers`: credentials checkers for
  ``Authorization: Basic`` and ``Bearer`` against the
  :class:`~jmap_twisted.interfaces.IDirectory`.
- :mod:`~jmap_twisted.auth.throttle`: the bounded password hashing queue
  and the limits on failed logins per client address and username.
- :mod:`~jmap_twisted.auth.realm`: the realm returning an
  :class:`~jmap_twisted.interfaces.IPrincipal` avatar with the user's
  accounts.
"""
