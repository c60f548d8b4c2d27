#!/usr/bin/env python3
"""Make a virtual environment with pip in it, on any Python 3.11+, then pip-install into it.

    python3 tools/mkvenv.py DIR [PIP INSTALL ARGUMENTS...]

e.g. ``python3 tools/mkvenv.py .venv -e .`` or ``python3 tools/mkvenv.py .venv nox``.

Debian's and Ubuntu's own Python refuses ``pip install`` outside a virtual environment
("externally-managed-environment"), and without the python3-venv package ``python3 -m venv``
cannot give the environment its pip (no ensurepip). This script needs neither: it creates DIR
with the standard library's ``venv`` and, where ensurepip is missing, installs pip from its
wheel on PyPI (checked against PyPI's SHA-256). An existing DIR that has pip is reused.
Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

PYPI_PIP = "https://pypi.org/pypi/pip/json"


def say(text: str) -> None:
    print(f"tools/mkvenv.py: {text}", flush=True)


def python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_pip(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


def pip_from_pypi(python: Path) -> None:
    """Install pip into the environment of ``python`` from pip's own wheel on PyPI."""
    with urllib.request.urlopen(PYPI_PIP, timeout=60) as reply:
        release = json.load(reply)
    wheel = next(
        f
        for f in release["urls"]
        if f["packagetype"] == "bdist_wheel" and f["filename"].endswith("-py3-none-any.whl")
    )
    say(f"no ensurepip in this Python: installing {wheel['filename']} from PyPI")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        url = urllib.parse.urljoin(PYPI_PIP, wheel["url"])  # mirrors may give relative URLs
        with urllib.request.urlopen(url, timeout=120) as reply:
            data = reply.read()
        if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
            raise SystemExit(f"tools/mkvenv.py: {wheel['filename']} does not match PyPI's SHA-256")
        path.write_bytes(data)
        # pip runs from its own wheel to install itself
        cmd = [python, str(path / "pip"), "install", "--quiet", "--no-index", str(path)]
        subprocess.run(cmd, check=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    env, pip_args = Path(argv[0]), argv[1:]
    python = python_in(env)
    if not has_pip(python):
        with_pip = importlib.util.find_spec("ensurepip") is not None
        say(f"creating {env} with {sys.executable} (Python {sys.version.split()[0]})")
        venv.EnvBuilder(with_pip=with_pip).create(env)
        if not with_pip:
            pip_from_pypi(python)
    if pip_args:
        say(f"pip install {' '.join(pip_args)}")
        return subprocess.run([python, "-m", "pip", "install", *pip_args], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
