"""
What a regular (non-editable) install ships.
"""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_twistd_plugin_and_every_package(tmp_path: Path) -> None:
    """
    The wheel holds twisted/plugins/jmap.py (else ``twistd jmap`` does not
    exist after ``pip install .``), every jmap_twisted subpackage, no
    twisted/__init__.py or twisted/plugins/__init__.py (which would shadow
    Twisted itself), and no tests.
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
    assert not any(name.startswith("tests/") for name in names)
