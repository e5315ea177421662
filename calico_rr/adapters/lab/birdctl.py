"""A client for BIRD 1.6's control socket (what ``birdc`` speaks), without ``birdc``.

The lab asks every daemon for its protocols and routes many times a second while
it samples a transition; a persistent Unix socket per daemon costs far less than
spawning ``birdc`` each time.

The protocol, as BIRD 1.6 implements it: on connect the daemon sends a greeting
(code 0001).  A command is one line.  The reply is a sequence of lines, each
``NNNN-text`` (more to come), ``NNNN text`` (the last line) or `` text`` (a
continuation of the previous code).  Codes 0xxx end a successful reply, 8xxx and
9xxx are errors, 1xxx and 2xxx carry table rows and headers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

_CODE_RE = re.compile(rb"^(\d{4})([ -])(.*)$")


class BirdError(RuntimeError):
    """BIRD answered with an error code, or the socket failed."""


class BirdCommandError(BirdError):
    """BIRD answered the command with an error code (the connection is fine)."""


@dataclass(frozen=True, slots=True)
class ProtocolState:
    name: str
    proto: str  # "BGP", "Kernel", "Static", ...
    state: str  # "up", "start", "down", ...
    info: str  # for BGP: "Established", "Active", "Connect", ...

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.startswith("Established")


def parse_protocols(rows: list[tuple[int, str]]) -> list[ProtocolState]:
    """Rows of ``show protocols`` (code 1002) into states."""
    out: list[ProtocolState] = []
    for code, text in rows:
        if code != 1002:
            continue
        parts = text.split()
        if len(parts) < 4:
            continue
        # name proto table state since [info...]; "since" may be "HH:MM:SS" or a date
        name, proto, _table, state = parts[:4]
        info = " ".join(parts[5:]) if len(parts) > 5 else ""
        out.append(ProtocolState(name, proto, state, info))
    return out


def parse_routes(rows: list[tuple[int, str]]) -> dict[str, int]:
    """Rows of ``show route`` (code 1007) into prefix -> number of paths held."""
    out: dict[str, int] = {}
    current: str | None = None
    for code, text in rows:
        if code != 1007:
            continue
        if text[:1] not in (" ", "\t"):
            first = text.split(maxsplit=1)[0] if text.strip() else ""
            try:
                current = str(ipaddress.ip_network(first, strict=False))
            except ValueError:
                current = None
                continue
            out[current] = out.get(current, 0) + 1
        elif current is not None and text.strip():
            out[current] += 1
    return out


@dataclass(frozen=True, slots=True)
class RouteCount:
    """``show route count``: routes (paths) and networks (prefixes) in the table."""

    routes: int
    networks: int


_COUNT_RE = re.compile(r"(\d+) of (\d+) routes for (\d+) networks")


def parse_route_count(rows: list[tuple[int, str]]) -> RouteCount:
    """The reply of ``show route count`` (BIRD 1.6: ``X of Y routes for Z networks``)."""
    for _, text in rows:
        m = _COUNT_RE.search(text)
        if m:
            return RouteCount(routes=int(m.group(2)), networks=int(m.group(3)))
    raise BirdError(f"no route count in BIRD's answer: {rows[-1:]}")


def parse_import_updates(rows: list[tuple[int, str]]) -> dict[str, int]:
    """BGP protocol name -> route updates it received (the *received* column of
    ``Import updates`` in ``show protocols all``: one per prefix announced to it,
    re-announcements included)."""
    out: dict[str, int] = {}
    current: str | None = None
    for code, text in rows:
        if code == 1002:
            parts = text.split()
            current = parts[0] if len(parts) > 1 and parts[1] == "BGP" else None
            continue
        words = text.split()
        if current is not None and words[:2] == ["Import", "updates:"] and len(words) > 2:
            out[current] = int(words[2])
    return out


class BirdControl:
    """One connection to one BIRD daemon's control socket (thread-safe)."""

    def __init__(self, path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise BirdError(f"cannot connect to BIRD at {self.path}: {exc}") from exc
        self._sock = sock
        self._buf = b""
        try:
            self._read_reply()  # the greeting
        except BirdError:
            self._drop()
            raise
        return sock

    def _line(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise BirdError(f"BIRD at {self.path}: {exc}") from exc
            if not chunk:
                raise BirdError(f"BIRD at {self.path} closed the control socket")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _read_reply(self) -> list[tuple[int, str]]:
        rows: list[tuple[int, str]] = []
        code = 0
        while True:
            line = self._line()
            m = _CODE_RE.match(line)
            if m is None:  # continuation of the previous code: " text"
                text = line[1:] if line.startswith(b" ") else line
                rows.append((code, text.decode(errors="replace")))
                continue
            code = int(m.group(1))
            rows.append((code, m.group(3).decode(errors="replace")))
            if m.group(2) == b" ":
                if code >= 8000:
                    raise BirdCommandError(
                        f"BIRD at {self.path}: {m.group(3).decode(errors='replace')}"
                    )
                return rows

    def call(self, command: str) -> list[tuple[int, str]]:
        """Send one command; the reply's rows as (code, text).  Reconnects once."""
        if "\n" in command:
            raise ValueError("a BIRD command is one line")
        with self._lock:
            for attempt in (1, 2):
                try:
                    sock = self._connect()
                    try:
                        sock.sendall(command.encode() + b"\n")
                    except OSError as exc:  # the daemon went away (broken pipe)
                        raise BirdError(f"BIRD at {self.path}: {exc}") from exc
                    return self._read_reply()
                except BirdCommandError:
                    raise
                except BirdError:
                    self._drop()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def protocols(self) -> list[ProtocolState]:
        return parse_protocols(self.call("show protocols"))

    def routes(self) -> dict[str, int]:
        return parse_routes(self.call("show route"))

    def route_count(self) -> RouteCount:
        """Paths and prefixes in the table without listing them (cheap at scale)."""
        return parse_route_count(self.call("show route count"))

    def import_updates(self) -> dict[str, int]:
        return parse_import_updates(self.call("show protocols all"))

    def configure(self) -> str:
        """Re-read the configuration file; the daemon's answer."""
        rows = self.call("configure")
        return rows[-1][1] if rows else ""
