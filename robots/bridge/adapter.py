"""The JSON adapter: a robot that cannot run Python reports its sensors and takes velocity commands as JSON.

One JSON object per UDP datagram, or per line on a serial port. Robot to bridge,
a reading (a GNSS fix or a scan is sent once, in the reading after it was taken,
and null in between: the adapter keeps it as the latest until the next)::

    {"t": 12.5, "odom": {"x", "y", "theta", "v", "w", "distance"},
     "gnss": {"x", "y", "sigma"} | null, "scan": {"angle_min", "angle_increment", "range_max",
     "ranges": [number | null, ...]} | null, "battery": 0..1, "charging": false}

Bridge to robot, a command: ``{"drive": {"v", "w"}}``, ``{"load": {"parcel", "kg"}}``
or ``{"unload": true}``. Anything else is refused, counted by reason, and never
replaces the latest good reading.
"""

from __future__ import annotations

import math
import os
import select
import socket
import termios
import threading
import time
import tty
from collections import Counter
from pathlib import Path
from typing import Any, Self

import numpy as np
import orjson

from identity.errors import DepaiError
from robots.body import BodyProfile, GnssFix, LidarScan, Odometry, Sensors
from robots.bridge.body import CallbackBody

MAX_READING_BYTES = 48 * 1024  # a 4096-beam scan with millimetre ranges fits; a UDP datagram can exceed it
MAX_BEAMS = 4096
POLL_S = 0.1  # how often the receiving thread looks whether it should stop

READING_FIELDS = ("t", "odom", "gnss", "scan", "battery", "charging")
ODOM_FIELDS = ("x", "y", "theta", "v", "w", "distance")
GNSS_FIELDS = ("x", "y", "sigma")
SCAN_FIELDS = ("angle_min", "angle_increment", "range_max", "ranges")


class AdapterError(DepaiError, ValueError):
    """A datagram or line that is not a valid reading (or command); ``code`` says why, for counting."""

    code = "bad_reading"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def _fields(value: Any, name: str, expected: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` as an object with exactly the ``expected`` keys (those in ``optional`` may be missing)."""
    if not isinstance(value, dict):
        raise AdapterError("bad_field", f"{name}: expected an object with {', '.join(expected)}, "
                                        f"got {type(value).__name__}")
    missing = [key for key in expected if key not in value and key not in optional]
    unknown = [key for key in value if key not in expected]
    if missing or unknown:
        raise AdapterError("bad_field", f"{name}: expected the fields {', '.join(expected)}"
                                        + (f"; missing {', '.join(missing)}" if missing else "")
                                        + (f"; unknown {', '.join(map(str, unknown))}" if unknown else ""))
    return value


def _number(value: Any, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` as a finite float in [low, high]; JSON true/false are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdapterError("bad_field", f"{name}: expected a finite number, got {value!r:.40}")
    if not low <= value <= high:
        raise AdapterError("bad_field", f"{name}: expected a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _positive(value: Any, name: str) -> float:
    number = _number(value, name)
    if number <= 0.0:
        raise AdapterError("bad_field", f"{name}: expected a number above 0, got {value!r}")
    return number


def _decode(data: bytes) -> Any:
    if len(data) > MAX_READING_BYTES:
        raise AdapterError("oversized", f"{len(data)} bytes; a message is at most {MAX_READING_BYTES} bytes")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise AdapterError("malformed_json", f"not one JSON object: {err}") from None


def _scan(value: dict[str, Any], t: float) -> LidarScan:
    scan = _fields(value, "scan", SCAN_FIELDS)
    range_max = _positive(scan["range_max"], "scan.range_max")
    ranges = scan["ranges"]
    if not isinstance(ranges, list) or not 1 <= len(ranges) <= MAX_BEAMS:
        raise AdapterError("bad_field", f"scan.ranges: expected a list of 1..{MAX_BEAMS} numbers or nulls")
    beams = np.array([math.inf if r is None else _number(r, f"scan.ranges[{i}]", 0.0, range_max)
                      for i, r in enumerate(ranges)])
    return LidarScan(t, _number(scan["angle_min"], "scan.angle_min"),
                     _positive(scan["angle_increment"], "scan.angle_increment"), range_max, beams,
                     float(beams.min()))


def parse_reading(data: bytes) -> Sensors:
    """One reading from the robot, checked field by field; AdapterError (code, message) if it is not one.

    The payload slot is the bridge's (see CallbackBody): a reading reports no parcel."""
    reading = _fields(_decode(data), "reading", READING_FIELDS, optional=("gnss", "scan"))
    t = _number(reading["t"], "t")
    odom = _fields(reading["odom"], "odom", ODOM_FIELDS)
    x, y, theta, v, w = (_number(odom[key], f"odom.{key}") for key in ODOM_FIELDS[:5])
    odometry = Odometry(t, x, y, theta, v, w, _number(odom["distance"], "odom.distance", 0.0))
    fix = reading.get("gnss")
    if fix is not None:
        fix = _fields(fix, "gnss", GNSS_FIELDS)
        fix = GnssFix(t, _number(fix["x"], "gnss.x"), _number(fix["y"], "gnss.y"),
                      _positive(fix["sigma"], "gnss.sigma"))
    scan = _scan(reading["scan"], t) if reading.get("scan") is not None else None
    charging = reading["charging"]
    if not isinstance(charging, bool):
        raise AdapterError("bad_field", f"charging: expected true or false, got {charging!r:.40}")
    return Sensors(t, odometry, fix, scan, _number(reading["battery"], "battery", 0.0, 1.0), charging, None, 0.0)


def drive_command(v: float, w: float) -> dict[str, Any]:
    """Hold linear ``v`` (m/s) and angular ``w`` (rad/s) until the next drive command."""
    return {"drive": {"v": float(v), "w": float(w)}}


def load_command(parcel: str, kg: float) -> dict[str, Any]:
    """Take ``parcel`` of ``kg`` aboard."""
    return {"load": {"parcel": parcel, "kg": float(kg)}}


def unload_command() -> dict[str, Any]:
    """Hand the parcel over."""
    return {"unload": True}


def encode_command(command: dict[str, Any]) -> bytes:
    """A command as the bytes of one datagram (a serial line adds a newline)."""
    return orjson.dumps(command)


def parse_command(data: bytes) -> dict[str, Any]:
    """A command from the bridge, checked (for robots written in Python, like the stand-in)."""
    command = _decode(data)
    if not isinstance(command, dict) or len(command) != 1:
        raise AdapterError("bad_field", "a command is an object with one of drive, load, unload")
    if "drive" in command:
        drive = _fields(command["drive"], "drive", ("v", "w"))
        return drive_command(_number(drive["v"], "drive.v"), _number(drive["w"], "drive.w"))
    if "load" in command:
        load = _fields(command["load"], "load", ("parcel", "kg"))
        if not isinstance(load["parcel"], str):
            raise AdapterError("bad_field", "load.parcel: expected a string")
        return load_command(load["parcel"], _number(load["kg"], "load.kg", 0.0))
    if command.get("unload") is True:
        return unload_command()
    raise AdapterError("bad_field", f"unknown command {next(iter(command))!r}; expected drive, load or unload")


class _Adapter:
    """What both wires share: a receiving thread that keeps the latest good reading and counts refusals."""

    where: str  # "udp HOST:PORT" or "serial PATH", for messages

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter()
        self.last_error: str | None = None
        self._latest: tuple[Sensors, float] | None = None  # and when it arrived (monotonic)
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"adapter {self.where}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def _refuse(self, code: str, message: str) -> None:
        self.refused[code] += 1
        self.last_error = f"{code}: {message}"

    def _accepted(self, data: bytes) -> bool:
        """Keep ``data`` as the latest reading if it is one; count it as refused if not."""
        try:
            sensors = parse_reading(data)
        except AdapterError as err:
            self._refuse(err.code, str(err))
            return False
        with self._arrived:
            if self._latest is not None:  # a fix or scan is sent once; it stays the latest until the next
                previous = self._latest[0]
                sensors = sensors._replace(gnss=previous.gnss if sensors.gnss is None else sensors.gnss,
                                           scan=previous.scan if sensors.scan is None else sensors.scan)
            self._latest = (sensors, time.monotonic())
            self._arrived.notify_all()
        return True

    def latest(self) -> Sensors | None:
        """The latest good reading, or None before the first."""
        latest = self._latest
        return latest[0] if latest is not None else None

    def wait_reading(self, timeout: float) -> Sensors:
        """The latest good reading, waiting up to ``timeout`` s for the first; TimeoutError if none came."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._latest is not None, timeout):
                refused = f"; refused {dict(self.refused)}, the last as {self.last_error}" if self.refused else ""
                raise TimeoutError(f"no reading from the robot on {self.where} within {timeout:g} s{refused}")
            return self._latest[0]

    def send(self, command: dict[str, Any]) -> None:
        """Send one command to the robot."""
        if self._stop.is_set():
            raise RuntimeError(f"the adapter on {self.where} is closed")
        self._write(encode_command(command))

    def robot_clock(self) -> float:
        """The robot's clock now: its latest reading's ``t`` plus the time since that reading arrived."""
        latest = self._latest
        if latest is None:
            raise RuntimeError(f"no reading from the robot on {self.where} yet")
        return latest[0].t_s + (time.monotonic() - latest[1])

    def _read(self) -> Sensors:
        sensors = self.latest()
        if sensors is None:
            raise RuntimeError(f"no reading from the robot on {self.where} yet; wait_reading() first")
        return sensors

    def body(self, profile: BodyProfile) -> CallbackBody:
        """The robot as a Body: drive, load and unload become commands to it, sense its latest reading."""
        return CallbackBody(profile, drive=lambda v, w: self.send(drive_command(v, w)), read=self._read,
                            load=lambda parcel, kg: self.send(load_command(parcel, kg)),
                            unload=lambda: self.send(unload_command()), clock=self.robot_clock)

    def close(self) -> None:
        """Stop receiving (within POLL_S) and release the socket or device."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpAdapter(_Adapter):
    """The JSON adapter over UDP: readings in, commands back to the robot's address (given, or learned from
    its first good reading; datagrams from any other address are then refused as ``wrong_sender``)."""

    def __init__(self, bind: tuple[str, int] = ("127.0.0.1", 0), *, robot: tuple[str, int] | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._socket.bind(bind)
        except OSError:
            self._socket.close()
            raise
        self._socket.settimeout(POLL_S)
        self.robot = robot
        host, port = self.address
        self.where = f"udp {host}:{port}"
        super().__init__()

    @property
    def address(self) -> tuple[str, int]:
        """Where the bridge listens: (host, port)."""
        return self._socket.getsockname()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._socket.recvfrom(65536)
            except OSError:  # the poll timed out, or an ICMP error came back from an earlier send
                continue
            if self.robot is not None and sender != self.robot:
                self._refuse("wrong_sender", f"a datagram from {sender[0]}:{sender[1]}, but the robot is at "
                                             f"{self.robot[0]}:{self.robot[1]}")
            elif self._accepted(data) and self.robot is None:
                self.robot = sender

    def _write(self, data: bytes) -> None:
        if self.robot is None:
            raise RuntimeError(f"the robot's address is not known yet on {self.where}: no reading has arrived")
        self._socket.sendto(data, self.robot)

    def _release(self) -> None:
        self._socket.close()


class SerialAdapter(_Adapter):
    """The JSON adapter over a serial device (one JSON object per line each way), raw mode at ``baud``."""

    def __init__(self, path: str | Path, *, baud: int = 115200) -> None:
        self.path = Path(path)
        self.where = f"serial {self.path}"
        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise ValueError(f"{baud} is not a baud rate this system's serial driver knows")
        # O_NONBLOCK only for the open (it would wait for a modem's carrier otherwise); reads wait in select()
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            os.set_blocking(self._fd, True)
            if os.isatty(self._fd):
                tty.setraw(self._fd)  # no echo, no line editing, no CR/LF translation: bytes as sent
                attrs = termios.tcgetattr(self._fd)
                attrs[2] |= termios.CLOCAL | termios.CREAD
                attrs[4] = attrs[5] = speed
                termios.tcsetattr(self._fd, termios.TCSANOW, attrs)
        except (OSError, termios.error):
            os.close(self._fd)
            raise
        super().__init__()

    def _run(self) -> None:
        pending, skipping = b"", False  # skipping: the rest of an oversized line, already refused
        while not self._stop.is_set():
            if not select.select([self._fd], [], [], POLL_S)[0]:
                continue
            try:
                chunk = os.read(self._fd, 4096)
            except OSError as err:  # the device went away (a pty's other end closed, a USB cable pulled)
                self.last_error = f"device: {err}"
                return
            if not chunk:
                self.last_error = "device: end of file"
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if skipping:
                    skipping = False
                elif line.strip():
                    self._accepted(line.rstrip(b"\r"))
            if len(pending) > MAX_READING_BYTES and not skipping:
                self._refuse("oversized", f"a line of more than {MAX_READING_BYTES} bytes")
                skipping = True
            if skipping:
                pending = b""

    def _write(self, data: bytes) -> None:
        view = memoryview(data + b"\n")
        while view:
            view = view[os.write(self._fd, view):]

    def _release(self) -> None:
        os.close(self._fd)
