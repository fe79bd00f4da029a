"""Make non-loopback network connections fail in this process (tests of the offline federation).

Activated by :func:`install` (from the ``sitecustomize`` beside it, which the FL tests put on
``PYTHONPATH`` and which installs it when ``HRC_FL_NET_GUARD_LOG`` is set, so it covers every Python
process of a run). Every refused attempt is appended to that log as one line, so a test can assert that
nothing tried to leave the machine.
Covers Python sockets (``connect``, ``connect_ex``, ``create_connection``) and name resolution of
non-local host names; gRPC's C core is configured with loopback addresses only in those tests.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import traceback

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like stay on the machine
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(log_path: str) -> None:
    """Patch the socket module so that non-loopback connects and lookups raise OSError (and are logged)."""

    def refuse(what: str) -> OSError:
        with open(log_path, "a", encoding="utf-8") as handle:
            stack = "".join(traceback.format_stack(limit=8)).replace("\n", " | ")
            handle.write(f"pid={os.getpid()} {what} :: {stack}\n")
        return OSError(f"hrc_fl net guard: outbound connection refused ({what})")

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise refuse(f"connect {address!r}")
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise refuse(f"connect_ex {address!r}")
        return original_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        if host is not None and not _is_loopback(host):
            raise refuse(f"getaddrinfo {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
