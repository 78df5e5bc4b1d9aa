"""
A throwaway self-signed certificate for 127.0.0.1 and localhost.
"""

from __future__ import annotations

from pathlib import Path

from jmap_twisted.testing import throwaway_certificate


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """
    Write ``key.pem`` and ``cert.pem`` into ``directory``; return their paths.
    """
    key, certificate = throwaway_certificate()
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(key)
    cert_path.write_bytes(certificate)
    return key_path, cert_path
