"""Print pyproject.toml's dependencies, the core ones plus those of the extras named, one a line.

The Dockerfile installs these before it copies the code, so a code change rebuilds only the
last, small layer (``pip install --no-deps``) and not the dependencies' (Python 3.11+: tomllib).

    python3 deploy/requirements.py pyproject.toml s3 worker > requirements.txt
"""

from __future__ import annotations

import sys

import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    found = list(project["dependencies"])
    for extra in extras:
        if extra not in project["optional-dependencies"]:
            sys.exit(f"{pyproject}: no extra {extra!r}")
        found += project["optional-dependencies"][extra]
    return found


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: requirements.py PYPROJECT [EXTRA...]")
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
