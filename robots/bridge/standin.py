"""A scripted stand-in robot: the motors and sensors we do not have, speaking the JSON adapter over UDP.

``python -m robots.bridge.standin --bridge HOST:PORT`` drives a perfect unicycle
by the last drive command (and stops when none came for WATCHDOG_S, as real
firmware must), and reports wheel odometry with a small scale error, a noisy
GNSS fix once a second, an all-clear lidar scan and a slowly draining battery.
It prints one line, ``standin ready on HOST:PORT`` (its own address), and exits
0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import math
import random
import select
import signal
import socket
import sys
import time
from typing import Any

import orjson

from robots.bridge.adapter import MAX_READING_BYTES, AdapterError, parse_command

WATCHDOG_S = 1.0  # no drive command for this long: stop
ODOM_SCALE = 1.01  # the wheels measure 1 % more than was driven
GNSS_PERIOD_S = 1.0
BEAMS, FOV_RAD, RANGE_MAX_M = 64, 1.5 * math.pi, 12.0
DRAIN_PER_S, DRAIN_PER_M = 2e-5, 1e-4  # battery fraction: idle, and per metre driven
GARBAGE = (  # what --garbage sends, in turn: one of each refusal the adapter counts
    b"this is not json",
    b'{"t": "soon"}',
    orjson.dumps({"t": 0.0, "odom": {"x": 0, "y": 0, "theta": 0, "v": 0, "w": 0, "distance": 0}, "battery": 2.0,
                  "charging": False}),
    b'{"pad": "' + b"x" * MAX_READING_BYTES + b'"}',
)


class StandIn:
    """The robot's state: true pose, odometry, GNSS, battery and payload, advanced by the last command."""

    def __init__(self, x: float, y: float, theta: float, *, now: float, max_speed: float = 1.5,
                 max_turn: float = 2.0, gnss_sigma: float = 0.3, seed: int = 0) -> None:
        self.x, self.y, self.theta = x, y, theta
        self.odom = [x, y, theta]  # the odometry frame starts where the robot does
        self.distance = 0.0
        self.v = self.w = 0.0
        self.battery = 0.95
        self.parcel: str | None = None
        self.max_speed, self.max_turn, self.gnss_sigma = max_speed, max_turn, gnss_sigma
        self._random = random.Random(seed)
        self._t = now
        self._commanded_at = -math.inf
        self._next_fix = now

    def obey(self, command: dict[str, Any], now: float) -> None:
        """Act on one checked command."""
        if "drive" in command:
            drive = command["drive"]
            self.v = max(-self.max_speed, min(self.max_speed, drive["v"]))
            self.w = max(-self.max_turn, min(self.max_turn, drive["w"]))
            self._commanded_at = now
        elif "load" in command:
            self.parcel = command["load"]["parcel"]
        else:
            self.parcel = None

    def advance(self, now: float) -> None:
        """Move by the command held since the last call (nothing once the watchdog has run out)."""
        dt, self._t = now - self._t, now
        if now - self._commanded_at > WATCHDOG_S:
            self.v = self.w = 0.0
        heading = self.theta + self.w * dt / 2  # midpoint rule: exact enough at 20 Hz
        self.x += self.v * math.cos(heading) * dt
        self.y += self.v * math.sin(heading) * dt
        self.theta = math.remainder(self.theta + self.w * dt, 2 * math.pi)
        v = self.v * ODOM_SCALE
        ox, oy, otheta = self.odom
        heading = otheta + self.w * dt / 2
        self.odom = [ox + v * math.cos(heading) * dt, oy + v * math.sin(heading) * dt,
                     math.remainder(otheta + self.w * dt, 2 * math.pi)]
        self.distance += abs(v) * dt
        self.battery = max(0.0, self.battery - DRAIN_PER_S * dt - DRAIN_PER_M * abs(self.v) * dt)

    def reading(self, now: float) -> dict[str, Any]:
        """The reading to send now: a GNSS fix in it once a second, a scan in every one."""
        ox, oy, otheta = self.odom
        fix = None
        if now >= self._next_fix:
            self._next_fix = max(self._next_fix + GNSS_PERIOD_S, now)
            gauss = self._random.gauss
            fix = {"x": self.x + gauss(0.0, self.gnss_sigma), "y": self.y + gauss(0.0, self.gnss_sigma),
                   "sigma": self.gnss_sigma}
        return {"t": now, "odom": {"x": ox, "y": oy, "theta": otheta, "v": self.v * ODOM_SCALE, "w": self.w,
                                   "distance": self.distance},
                "gnss": fix, "scan": {"angle_min": -FOV_RAD / 2, "angle_increment": FOV_RAD / BEAMS,
                                      "range_max": RANGE_MAX_M, "ranges": [None] * BEAMS},
                "battery": self.battery, "charging": False}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Play the robot until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m robots.bridge.standin", description=__doc__.split("\n")[0])
    parser.add_argument("--bridge", type=_address, required=True, help="the bridge's UDP HOST:PORT")
    parser.add_argument("--x", type=float, default=0.0)
    parser.add_argument("--y", type=float, default=0.0)
    parser.add_argument("--theta", type=float, default=0.0, help="heading, radians counter-clockwise from +x")
    parser.add_argument("--hz", type=float, default=20.0, help="readings per second")
    parser.add_argument("--gnss-sigma", type=float, default=0.3, help="GNSS 1-sigma error, m")
    parser.add_argument("--max-speed", type=float, default=1.5, help="m/s; faster commands are clamped")
    parser.add_argument("--max-turn", type=float, default=2.0, help="rad/s; faster commands are clamped")
    parser.add_argument("--seed", type=int, default=0, help="the GNSS noise's seed")
    parser.add_argument("--garbage", type=int, default=0, help="send this many malformed datagrams first")
    args = parser.parse_args(argv)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: stopping.append(number))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(args.bridge)  # commands are taken from the bridge only
        host, port = sock.getsockname()[:2]
        print(f"standin ready on {host}:{port}", flush=True)
        now = time.monotonic()
        robot = StandIn(args.x, args.y, args.theta, now=now, max_speed=args.max_speed, max_turn=args.max_turn,
                        gnss_sigma=args.gnss_sigma, seed=args.seed)
        for i in range(args.garbage):
            _send(sock, GARBAGE[i % len(GARBAGE)])
        period, next_tick = 1.0 / args.hz, now
        while not stopping:
            if select.select([sock], [], [], max(0.0, next_tick - time.monotonic()))[0]:
                _obey(sock, robot)
            now = time.monotonic()
            if now >= next_tick:
                robot.advance(now)
                _send(sock, orjson.dumps(robot.reading(now)))
                next_tick = max(next_tick + period, now)
    return 0


def _obey(sock: socket.socket, robot: StandIn) -> None:
    try:
        data = sock.recv(65536)
    except OSError:  # an ICMP error for an earlier reading: the bridge is not listening (yet)
        return
    try:
        robot.obey(parse_command(data), time.monotonic())
    except AdapterError as err:
        print(f"standin: refused a command ({err.code}): {err}", file=sys.stderr, flush=True)


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:  # the bridge is not listening (yet); a robot keeps reporting
        pass


if __name__ == "__main__":
    sys.exit(main())
