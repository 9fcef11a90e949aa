"""Network namespaces as test hosts: made, linked through a bridge, cut, healed, swept.

Every name starts with ``rsc-<pid>-`` (namespaces) or ``rsc<pid>t`` (the one interface in the
root namespace), ``<pid>`` being the test process that made it, so a later run removes what a
killed run left behind (:func:`sweep`) without touching a live run's hosts. The bridge lives in
a namespace of its own; the test process reaches the hosts through one veth pair whose root end
holds the network's ``.1`` address. Addresses come from 10.254.N.0/24, a range used only here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

PREFIX = "rsc"
NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000


class NamespacesUnavailable(RuntimeError):
    """This machine (or user) cannot make network namespaces; the reason is the message."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Remove namespaces, root links and temp dirs of test runs whose process is gone."""
    removed: list[str] = []
    listing = ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}-(\d+)-.+", name)
        if match and not _pid_alive(int(match.group(1))):
            kill_in_namespace(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        match = re.match(rf"\d+: ({PREFIX}(\d+)t\d*)[@:]", line)
        if match and not _pid_alive(int(match.group(2))):
            ip("link", "del", match.group(1), check=False)
            removed.append(match.group(1))
    for path in Path("/tmp").glob(f"{PREFIX}-*"):
        match = re.fullmatch(rf"{PREFIX}-(\d+)-.+", path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def kill_in_namespace(name: str) -> None:
    """SIGKILL every process still inside a namespace (a leftover holds its sockets)."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)


def _remove(name: str) -> None:
    if name in ip("netns", "list", check=False).stdout.split():
        kill_in_namespace(name)
        ip("netns", "del", name, check=False)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.254.0.0/16 that no interface of the root namespace uses."""
    used = ip("-o", "-4", "addr", "show", check=False).stdout
    for third in range(10 + os.getpid() % 200, 250):
        net = ipaddress.IPv4Network(f"10.254.{third}.0/24")
        if f"10.254.{third}." not in used:
            return net
    raise NamespacesUnavailable("no free 10.254.N.0/24 subnet for the test hosts")


class Network:
    """A bridge namespace, hosts attached to it, and the test process's own link to it."""

    _made_here = 0

    def __init__(self) -> None:
        Network._made_here += 1  # names unique within the process too, whatever a past one left
        self.run = f"{PREFIX}-{os.getpid()}-{Network._made_here}"
        self.subnet = free_subnet()
        self._addresses = self.subnet.hosts()
        self.tester_address = str(next(self._addresses))  # .1, in the root namespace
        self.bridge_ns = f"{self.run}-br"
        self.hosts: dict[str, str] = {}  # host name -> its first address
        self._made: list[str] = []
        self._root_link = f"{PREFIX}{os.getpid()}t{Network._made_here % 100}"
        self._ports: dict[str, str] = {}  # host -> its veth end in the bridge namespace
        # Our pid's names can only be left by a dead run that had the same pid (pids wrap).
        ip("link", "del", self._root_link, check=False)
        _remove(self.bridge_ns)
        ip("netns", "add", self.bridge_ns)
        self._made.append(self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        ip("-n", self.bridge_ns, "link", "set", "lo", "up")
        # The peer is made inside the bridge namespace at once: a "tester" in the root namespace,
        # even for a moment, would collide with another run's.
        ip("link", "add", self._root_link, "type", "veth", "peer", "name", "tester", "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", "tester", "master", "br0")
        ip("-n", self.bridge_ns, "link", "set", "tester", "up")
        ip("addr", "add", f"{self.tester_address}/{self.subnet.prefixlen}", "dev", self._root_link)
        ip("link", "set", self._root_link, "up")

    def namespace(self, host: str) -> str:
        return f"{self.run}-{host}"

    def add_host(self, host: str, extra_addresses: int = 0) -> list[str]:
        """A namespace linked to the bridge; returns its addresses (the first is its name's)."""
        ns = self.namespace(host)
        _remove(ns)
        ip("netns", "add", ns)
        self._made.append(ns)
        port = f"p-{host}"[:15]
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "set", port, "master", "br0")
        ip("-n", self.bridge_ns, "link", "set", port, "up")
        addresses = [str(next(self._addresses)) for _ in range(1 + extra_addresses)]
        for address in addresses:
            ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts[host] = addresses[0]
        self._ports[host] = port
        return addresses

    # -- faults ----------------------------------------------------------------------------
    def link(self, host: str, up: bool) -> None:
        """Cut a host off the bridge (its port down: nothing in, nothing out), or heal it."""
        ip("-n", self.bridge_ns, "link", "set", self._ports[host], "up" if up else "down")

    def drop_replies(self, host: str, *, to: str, source: str | None = None, on: bool = True) -> None:
        """Silently drop what ``host`` sends to address ``to`` (from its ``source`` address only,
        when given): the peer's packets arrive, its answers never come back, as in a partition."""
        selector = ["to", f"{to}/32"] + (["from", f"{source}/32"] if source else [])
        ip("-n", self.namespace(host), "rule", "add" if on else "del", *selector, "blackhole",
           "priority", "100", check=on)

    # -- processes -------------------------------------------------------------------------
    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        # nsenter joins the network namespace only. ``ip netns exec`` also makes a mount
        # namespace, and a long-lived process in one keeps a copy of every /run/netns mount of
        # that moment: another run's ``ip netns del`` then cannot remove its namespace file.
        return ["nsenter", f"--net={NETNS_DIR / self.namespace(host)}", "--", *argv]

    def enter(self, host: str) -> None:
        """Move the calling thread into a host's namespace (sockets it makes live there)."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(NETNS_DIR / self.namespace(host), os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.namespace(host)}")
        finally:
            os.close(fd)

    def destroy(self) -> None:
        for ns in reversed(self._made):
            kill_in_namespace(ns)
        for ns in reversed(self._made):
            ip("netns", "del", ns, check=False)
        ip("link", "del", self._root_link, check=False)  # gone with its peer already, normally
        self._made.clear()
