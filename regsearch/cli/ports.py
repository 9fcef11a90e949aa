"""Is a TCP port free for ``up``'s API or dashboard, and if not, what answers on it?

``up`` checks its ports before it starts anything: a second ``up`` (or any other server) on the
same port would otherwise answer ``up``'s own readiness probe, and ``up`` would report ready
while its own API could not bind. The description of the holder is best effort: what it says
over HTTP, and the listening process when this user may see it (Linux ``/proc``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = "127.0.0.1"


def port_free(port: int, host: str = HOST) -> bool:
    """True when ``port`` can be bound on ``host`` now (as uvicorn and Streamlit bind it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is free
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _http_answer(port: int) -> str:
    """What speaks on ``port``, as told over HTTP."""
    import httpx

    base = f"http://{HOST}:{port}"
    try:
        with httpx.Client(base_url=base, timeout=1.0) as http:
            title = ""
            response = http.get("/openapi.json")
            if response.status_code == 200:
                try:
                    title = str(response.json().get("info", {}).get("title", ""))
                except ValueError:
                    title = ""
            if "regsearch" in title.lower():
                return f"a regsearch API ({base}/docs)"
            if response.status_code == 401 and _json(http.get("/healthz")) == {"status": "ok"}:
                return f"a regsearch API with a token ({base})"  # /openapi.json is guarded, health is not
            if http.get("/_stcore/health").text.strip() == "ok":
                return f"a Streamlit app, such as a regsearch dashboard ({base})"
            server = response.headers.get("server")
            return f"an HTTP server ({server})" if server else "an HTTP server"
    except httpx.HTTPError:
        return "a program that does not answer HTTP"


def _json(response: object) -> object:
    try:
        return response.json()  # type: ignore[attr-defined]
    except ValueError:
        return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _listener(port: int) -> str | None:
    """``pid N: command line`` of the process listening on ``port``, when /proc shows it."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {entry.name}: {command[:120]}"
        except OSError:  # another user's process, or it just exited
            continue
    return None


def port_holder(port: int) -> str:
    """A one-line description of what holds ``port``."""
    listener = _listener(port)
    return _http_answer(port) + (f", {listener}" if listener else "")


def taken_ports(ports: dict[str, int]) -> list[str]:
    """One line per port of ``{what: port}`` that is taken, naming what answers on it."""
    return [f"port {port} ({what}) is taken by {port_holder(port)}"
            for what, port in ports.items() if not port_free(port)]
