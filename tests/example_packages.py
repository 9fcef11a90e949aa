"""Install one of the repository's example packages (``examples/networks``, ``examples/plugin``)
into the test environment, importable from this very process.

An editable install is found through a ``.pth`` file, and a running interpreter reads ``.pth``
files only at start-up: without ``site.addsitedir`` the entry point's metadata is visible but
its module is not importable until the next process. Two xdist workers may install at once,
so the install holds a file lock.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]


def install_example(folder: str, distribution: str) -> bool:
    """Install ``examples/<folder>`` (distribution ``distribution``) unless it is installed.

    Returns whether this call installed it (so a caller may uninstall it afterwards).
    """
    with FileLock(str(Path(sysconfig.get_paths()["purelib"]) / f".{distribution}.install.lock")):
        try:
            importlib.metadata.distribution(distribution)
            installed_here = False
        except importlib.metadata.PackageNotFoundError:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--no-build-isolation", "-e", str(ROOT / "examples" / folder)],
                           check=True, capture_output=True, timeout=300)
            installed_here = True
    site.addsitedir(sysconfig.get_paths()["purelib"])  # this process reads the new .pth file too
    importlib.invalidate_caches()
    return installed_here
