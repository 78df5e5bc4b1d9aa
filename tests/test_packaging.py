"""
What a regular (non-editable) install ships.
"""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> set[str]:
    """
    The distribution names (with their extras) of requirement lines.
    """
    return {re.split(r"[<>=!~;\s]", line, maxsplit=1)[0].lower() for line in requirements}


def test_optional_libraries_are_extras() -> None:
    """
    A plain install brings neither the PostgreSQL driver nor the AMQP
    client (a default server needs neither): each comes with its extra,
    and the ``test`` and ``lint`` extras bring both, for the suite and the
    type checker.
    """
    options = read_configuration(ROOT / "setup.cfg")["options"]
    required = _names(options["install_requires"])
    assert not {name for name in required if name.startswith(("psycopg", "txamqp", "treq"))}, (
        required
    )
    extras = {extra: _names(lines) for extra, lines in options["extras_require"].items()}
    assert extras["postgresql"] == {"psycopg[binary]", "psycopg_pool"}
    assert extras["amqp"] == {"txamqp"}
    assert extras["oidc"] == {"pyjwt[crypto]"}
    for extra in ("test", "lint"):
        assert "jmap-twisted[amqp,postgresql,oidc]" in extras[extra]
    assert "treq" in extras["test"]


def test_wheel_ships_the_twistd_plugin_and_every_package(tmp_path: Path) -> None:
    """
    The wheel holds twisted/plugins/jmap.py (else ``twistd jmap`` does not
    exist after ``pip install .``), every jmap_twisted subpackage, no
    twisted/__init__.py or twisted/plugins/__init__.py (which would shadow
    Twisted itself), and no tests.  Its metadata requires the PostgreSQL
    driver and the AMQP client only with their extras.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("jmap_twisted-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/jmap.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    packages = {
        p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "jmap_twisted").rglob("__init__.py")
    }
    for package in packages:
        assert f"{package}/__init__.py" in names
    for page_file in ("index.html", "demo.js", "demo.css"):  # served by --demo
        assert f"jmap_twisted/demo/{page_file}" in names
    assert not any(name.startswith("tests/") for name in names)
    (metadata_name,) = (name for name in names if name.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(metadata_name).decode()
    optional = [
        line
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and ("psycopg" in line or "txamqp" in line)
    ]
    assert optional
    for line in optional:
        assert "extra ==" in line, line
    assert "Provides-Extra: postgresql" in metadata
    assert "Provides-Extra: amqp" in metadata
