"""The simulated world: a PyBullet client holding the city, moving obstacles and a fleet of delivery robots.

Two physics modes share one interface. ``kinematic`` (large fleets) integrates every robot's unicycle
motion in numpy; its robots have no PyBullet bodies (only visual ones in the GUI) and the lidar sees them as
discs computed in numpy. They stop at buildings and obstacles but pass through each other (robot-robot
overlaps are counted in ``truth``, not blocked). ``dynamic`` (small fleets) drives wheeled multibodies with
motors and lets PyBullet resolve every contact.

Robot-facing readings (odometry, GNSS, lidar, battery) carry instrument noise; :attr:`World.truth` is the
exact state, for measuring the fleet, never for feeding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from identity.errors import DepaiError
from sim.bodies import (
    ObstaclePool,
    Shapes,
    add_boxes,
    add_ground,
    add_robot_looks,
    add_wheeled_robot,
    drive_wheels,
)
from sim.collide import BoxGrid, disc_gaps
from sim.geometry import Box
from sim.lidar import Lidar, LidarSpec
from sim.quiet import import_pybullet, silenced
from sim.sensors import Battery, Gnss, NoiseSpec, Odometer

p = import_pybullet()

SUBSTEP_S = 1.0 / 240.0  # fixed PyBullet step of the dynamic mode
CONTACT_MARGIN_M = 0.05  # a robot this close to a box is still in the contact episode it started
_BISECTIONS = 6  # a blocked robot advances to within 1/64 of its step from the face it hit


class ObstacleSource(Protocol):
    """Anything that can say which moving or temporary obstacles stand where at a given time."""

    def active(self, t_s: float) -> dict[str, Box]:
        """Obstacle id -> box at time ``t_s``; ids come and go."""
        ...


@dataclass(frozen=True, slots=True)
class RobotSpec:
    """One robot model's datasheet: body size, drive geometry and limits, mass, payload and energy use.

    The turn-rate acceleration limit follows from the wheels: 2 * max_accel_mps2 / wheel_base_m.
    """

    model: str = "depai-courier-1"
    radius_m: float = 0.35
    height_m: float = 0.5
    wheel_base_m: float = 0.5
    wheel_radius_m: float = 0.1
    max_speed_mps: float = 1.5
    max_turn_rps: float = 2.0
    max_accel_mps2: float = 1.5
    mass_kg: float = 25.0
    payload_kg: float = 10.0
    battery_wh: float = 400.0
    wh_per_m: float = 0.02
    idle_w: float = 15.0


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """A snapshot of what really happened, for measuring the fleet only.

    ``collisions`` counts contact episodes with buildings and obstacles, ``robot_contacts`` with other robots.
    """

    poses: np.ndarray  # (N, 3) x, y, theta
    speeds: np.ndarray  # (N,) signed forward speed, m/s
    odometer_m: np.ndarray  # (N,) true path length
    collisions: np.ndarray  # (N,) int
    robot_contacts: np.ndarray  # (N,) int
    steps: int


@dataclass(frozen=True, slots=True)
class _Readings:
    """One tick's instrument readings of every robot, as lists indexed by robot."""

    odometry: list[list[float]]  # x, y, theta, v, w, distance
    gnss: list[list[float]]  # t (nan before the first fix), x, y
    battery: list[float]
    charging: list[bool]


def _grow(a: np.ndarray, value: float) -> np.ndarray:
    return np.append(a, np.asarray(value, dtype=a.dtype))


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


# Per-robot numpy columns of the world, grown by one slot per robot added.
_FLOAT_COLUMNS = (
    "_x", "_y", "_th", "_v", "_w", "_cmd_v", "_cmd_w", "_radius", "_max_v", "_max_w", "_max_acc", "_max_alpha",
    "_base", "_wheel_r", "_load_kg", "_true_m",
)
_INT_COLUMNS = ("_collisions", "_robot_contacts")
_BOOL_COLUMNS = ("_touching", "_touching_robot", "_dirty")


class World:
    """A PyBullet world of static boxes, optional moving obstacles and robots that step together every ``dt``.

    Robot ``i`` is the ``i``-th :meth:`add_robot`. Robots may be added at any time; a new robot's first
    lidar scan comes with the next scan tick, its first GNSS fix within one GNSS period.
    """

    def __init__(
        self,
        boxes: Sequence[Box],
        *,
        seed: int,
        dt: float = 0.1,
        physics: str = "kinematic",
        gui: bool = False,
        lidar: LidarSpec = LidarSpec(),
        noise: NoiseSpec = NoiseSpec(),
        obstacles: ObstacleSource | None = None,
        chargers: Sequence[tuple[float, float]] = (),
        charge_w: float = 400.0,
        charge_radius_m: float = 2.0,
        ground_size_m: float | None = None,
    ) -> None:
        if physics not in ("kinematic", "dynamic"):
            raise ValueError(f"physics must be 'kinematic' or 'dynamic', not {physics!r}")
        self._substeps = max(1, round(dt / SUBSTEP_S))
        if physics == "dynamic" and abs(self._substeps * SUBSTEP_S - dt) > 1e-9:
            raise ValueError(f"dynamic physics steps in 1/240 s; dt must be a multiple of it, not {dt}")
        self.dt = dt
        self.physics = physics
        self.time_s = 0.0
        self._steps = 0
        self._obstacles = obstacles
        odom_rng, gnss_rng, lidar_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        self._lidar_rng = lidar_rng
        self._gnss_sigma = noise.gnss_sigma_m
        self._odometer = Odometer(noise, odom_rng, dt)
        self._gnss = Gnss(noise, gnss_rng)
        self._battery = Battery(chargers, charge_w=charge_w, charge_radius_m=charge_radius_m, dt=dt)
        self._lidar = Lidar(lidar, sigma_m=noise.lidar_sigma_m)
        self._scan_every = max(1, round(1.0 / (lidar.rate_hz * dt)))
        self._scans = np.empty((0, lidar.rays), dtype=np.float32)
        self._scan_t = 0.0
        self._nearest: list[float] = []

        with silenced():
            self._client = p.connect(p.GUI if gui else p.DIRECT)
        if self._client < 0:
            raise DepaiError(
                "could not start a PyBullet client", code="sim_connect_failed",
                hint="the GUI needs a display; use gui=False" if gui else None,
            )
        self._shapes = Shapes(self._client, gui)
        self._boxes = list(boxes)
        with silenced():
            # dynamic beams start just outside the robot's body, so inside a wall it presses on: keep box bodies there
            self._static = set(add_boxes(self._shapes, self._boxes, merged=physics == "kinematic"))
            if physics == "dynamic" or gui:
                add_ground(self._shapes, ground_size_m)
        self._pool = ObstaclePool(self._shapes)
        self._static_grid = BoxGrid(self._boxes, reach=0.0)
        self._obstacle_grid = BoxGrid((), reach=0.0)
        if physics == "dynamic":
            p.setGravity(0, 0, -9.81, physicsClientId=self._client)
            p.setPhysicsEngineParameter(fixedTimeStep=SUBSTEP_S, numSubSteps=0, physicsClientId=self._client)

        for name in _FLOAT_COLUMNS:
            setattr(self, name, np.zeros(0))
        for name in _INT_COLUMNS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        for name in _BOOL_COLUMNS:
            setattr(self, name, np.zeros(0, dtype=bool))
        self._specs: list[RobotSpec] = []
        self._parcels: list[str | None] = []
        self._bodies: list[int] = []
        self._robot_bodies: set[int] = set()
        self._pending: list[int] = []  # robots whose bodies are not made yet
        self._embodied = physics == "dynamic" or gui  # kinematic robots need bodies only to be seen in the GUI
        self._wheel_angles = np.zeros((0, 2))
        self._readings: _Readings | None = None
        self._closed = False

    # ----------------------------------------------------------------------------------------- fleet

    @property
    def n_robots(self) -> int:
        """How many robots the world holds."""
        return len(self._specs)

    @property
    def lidar_spec(self) -> LidarSpec:
        """The scanner every robot carries."""
        return self._lidar.spec

    @property
    def lidar_angle_min(self) -> float:
        """Robot-frame angle of beam 0 of every scan (rad)."""
        return self._lidar.angle_min

    @property
    def lidar_angle_increment(self) -> float:
        """Angle between neighbouring beams of every scan (rad)."""
        return self._lidar.angle_increment

    @property
    def client(self) -> int:
        """The private PyBullet client id, for viewers and debugging."""
        return self._client

    def add_robot(
        self, x: float, y: float, theta: float, spec: RobotSpec = RobotSpec(), *, battery: float = 1.0
    ) -> int:
        """Put a robot of ``spec`` at pose (x, y, theta) with its battery at ``battery`` (0..1); returns its index."""
        i = self.n_robots
        values = {
            "_x": x, "_y": y, "_th": theta, "_v": 0.0, "_w": 0.0, "_cmd_v": 0.0, "_cmd_w": 0.0,
            "_radius": spec.radius_m, "_max_v": spec.max_speed_mps, "_max_w": spec.max_turn_rps,
            "_max_acc": spec.max_accel_mps2, "_max_alpha": 2 * spec.max_accel_mps2 / spec.wheel_base_m,
            "_base": spec.wheel_base_m, "_wheel_r": spec.wheel_radius_m, "_load_kg": 0.0, "_true_m": 0.0,
        }
        for name in _FLOAT_COLUMNS:
            setattr(self, name, _grow(getattr(self, name), values[name]))
        for name in _INT_COLUMNS:
            setattr(self, name, _grow(getattr(self, name), 0))
        for name in _BOOL_COLUMNS:
            setattr(self, name, _grow(getattr(self, name), False))
        self._specs.append(spec)
        self._parcels.append(None)
        self._bodies.append(-1)
        self._wheel_angles = np.concatenate([self._wheel_angles, np.zeros((1, 2))])
        if self._embodied:
            self._pending.append(i)
        self._readings = None
        self._odometer.add(x, y, theta, spec.wheel_base_m)
        self._gnss.add(self.time_s)
        self._battery.add(spec.battery_wh, battery, wh_per_m=spec.wh_per_m, mass_kg=spec.mass_kg, idle_w=spec.idle_w)
        if spec.radius_m + CONTACT_MARGIN_M > self._static_grid.reach:
            self._static_grid = BoxGrid(self._boxes, reach=spec.radius_m + CONTACT_MARGIN_M)
        return i

    def _make_bodies(self) -> None:
        """Create the PyBullet bodies of robots added since the last tick, batched by size where PyBullet allows.

        Dynamic robots get wheeled multibodies; kinematic ones, in the GUI, visual-only bodies.
        """
        pending, self._pending = self._pending, []
        groups: dict[tuple[float, float], list[int]] = {}
        for i in pending:
            groups.setdefault((self._specs[i].radius_m, self._specs[i].height_m), []).append(i)
        with silenced():
            for (radius, height), members in groups.items():
                if self.physics == "dynamic":
                    made = [self._wheeled_body(i) for i in members]
                else:
                    positions = [(float(self._x[i]), float(self._y[i])) for i in members]
                    made = add_robot_looks(self._shapes, radius, height, positions)
                for i, body in zip(members, made):
                    self._bodies[i] = body
        self._dirty[pending] = True
        self._robot_bodies = set(self._bodies)

    def _wheeled_body(self, i: int) -> int:
        s = self._specs[i]
        return add_wheeled_robot(
            self._shapes, x=float(self._x[i]), y=float(self._y[i]), theta=float(self._th[i]), radius=s.radius_m,
            height=s.height_m, wheel_base=s.wheel_base_m, wheel_radius=s.wheel_radius_m, mass_kg=s.mass_kg,
        )

    # -------------------------------------------------------------------------------------- commands

    def command(self, i: int, v: float, w: float) -> None:
        """Ask robot ``i`` for ``v`` (m/s) and ``w`` (rad/s), clipped to its limits; held until changed."""
        self._cmd_v[i] = min(max(v, -self._max_v[i]), self._max_v[i])
        self._cmd_w[i] = min(max(w, -self._max_w[i]), self._max_w[i])

    def command_all(self, v: np.ndarray | float, w: np.ndarray | float) -> None:
        """Command every robot at once: arrays with one entry per robot, or one value for all; clipped likewise."""
        self._cmd_v = np.clip(np.broadcast_to(np.asarray(v, dtype=float), self._max_v.shape), -self._max_v, self._max_v)
        self._cmd_w = np.clip(np.broadcast_to(np.asarray(w, dtype=float), self._max_w.shape), -self._max_w, self._max_w)

    def load(self, i: int, parcel: str, kg: float) -> None:
        """Put ``parcel`` of ``kg`` in robot ``i``'s payload slot; ValueError if it is taken or the weight is wrong."""
        if self._parcels[i] is not None:
            raise ValueError(f"robot {i} already carries {self._parcels[i]!r}")
        if not 0.0 <= kg <= self._specs[i].payload_kg:
            raise ValueError(f"robot {i} carries 0..{self._specs[i].payload_kg} kg, not {kg}")
        self._parcels[i] = parcel
        self._load_kg[i] = kg

    def unload(self, i: int) -> str | None:
        """Empty robot ``i``'s payload slot; returns the parcel id, or None if it carried nothing."""
        parcel, self._parcels[i] = self._parcels[i], None
        self._load_kg[i] = 0.0
        return parcel

    def payload(self, i: int) -> tuple[str | None, float]:
        """Robot ``i``'s parcel id (or None) and its weight in kg."""
        return self._parcels[i], float(self._load_kg[i])

    # ------------------------------------------------------------------------------------------ time

    def step(self, n: int = 1) -> None:
        """Advance the world ``n`` ticks of ``dt``: obstacles, motion, contacts, then every instrument."""
        for _ in range(n):
            self._tick()

    def _tick(self) -> None:
        if self._pending:
            self._make_bodies()
        self._steps += 1
        self.time_s = self._steps * self.dt
        self._readings = None
        if self._obstacles is not None:
            active = self._obstacles.active(self.time_s)
            self._pool.show(active)
            self._obstacle_grid = BoxGrid(active.values(), reach=self._static_grid.reach)
        x0, y0 = self._x.copy(), self._y.copy()
        v, w = self._ramped_twist()
        if self.physics == "kinematic":
            dl, dr, hit_static, gap = self._move_kinematic(v, w)
            robot_gap = disc_gaps(self._x, self._y, self._radius, CONTACT_MARGIN_M)
            hit_robot = robot_gap < 0.0
        else:
            dl, dr, hit_static, hit_robot = self._move_dynamic(v, w)
            gap = self._gap(self._x, self._y, self._radius)
            robot_gap = disc_gaps(self._x, self._y, self._radius, CONTACT_MARGIN_M)
        self._count_contacts(hit_static, gap, hit_robot, robot_gap)
        travelled = np.hypot(self._x - x0, self._y - y0)
        self._sense(dl, dr, travelled)
        kinematic = self.physics == "kinematic"
        if kinematic and self._embodied:
            self._place_bodies()
        if self._steps % self._scan_every == 0:
            self._scans = self._lidar.scan(self._client, self._poses(), self._radius, self._lidar_rng, discs=kinematic)
            self._scan_t = self.time_s
            self._nearest = self._scans.min(axis=1, initial=np.inf).tolist()

    def _ramped_twist(self) -> tuple[np.ndarray, np.ndarray]:
        """The commanded twist as far as the acceleration limits allow this tick; an empty battery commands zero."""
        live = ~self._battery.empty
        dv = np.clip(np.where(live, self._cmd_v, 0.0) - self._v, -self._max_acc * self.dt, self._max_acc * self.dt)
        dw = np.clip(np.where(live, self._cmd_w, 0.0) - self._w, -self._max_alpha * self.dt, self._max_alpha * self.dt)
        return self._v + dv, self._w + dw

    def _gap(self, x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
        gap = self._static_grid.gap(x, y, radius)
        if len(self._obstacle_grid):
            gap = np.minimum(gap, self._obstacle_grid.gap(x, y, radius))
        return gap

    def _move_kinematic(self, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Unicycle step for all robots; a robot that would enter a box stops at its face.

        Returns the true left and right wheel travel, who was blocked, and each robot's gap to the nearest box.
        """
        dt = self.dt
        v_mid, w_mid = (self._v + v) / 2, (self._w + w) / 2  # trapezoidal: the twist ramps within the tick
        heading = self._th + w_mid * dt / 2
        step_x, step_y = v_mid * dt * np.cos(heading), v_mid * dt * np.sin(heading)
        nx, ny = self._x + step_x, self._y + step_y
        gap = self._gap(nx, ny, self._radius)
        fraction = np.ones(len(v))
        hit = np.flatnonzero(gap < 0.0)
        if hit.size:
            # moving out of an obstacle that walked onto the robot is allowed; anything else is blocked
            escaping = gap[hit] > self._gap(self._x[hit], self._y[hit], self._radius[hit])
            hit = hit[~escaping]
        if hit.size:
            x, y, sx, sy, r = self._x[hit], self._y[hit], step_x[hit], step_y[hit], self._radius[hit]
            lo, hi = np.zeros(hit.size), np.ones(hit.size)
            for _ in range(_BISECTIONS):
                mid = (lo + hi) / 2
                clear = self._gap(x + mid * sx, y + mid * sy, r) >= 0
                lo, hi = np.where(clear, mid, lo), np.where(clear, hi, mid)
            fraction[hit] = lo
            nx[hit], ny[hit] = x + lo * sx, y + lo * sy
        blocked = np.zeros(len(v), dtype=bool)
        blocked[hit] = True
        nth = _wrap(self._th + w_mid * dt)
        self._dirty |= (nx != self._x) | (ny != self._y) | (nth != self._th)
        self._x, self._y, self._th = nx, ny, nth
        self._v, self._w = np.where(blocked, 0.0, v), w
        ds, dth = v_mid * dt * fraction, w_mid * dt
        return ds - dth * self._base / 2, ds + dth * self._base / 2, blocked, gap

    def _move_dynamic(self, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Drive the wheel motors, run the physics sub-steps, read the bodies back.

        Returns the true left and right wheel travel and who touches a box or another robot now.
        """
        client = self._client
        spin_l = (v - w * self._base / 2) / self._wheel_r
        spin_r = (v + w * self._base / 2) / self._wheel_r
        for body, left, right in zip(self._bodies, spin_l.tolist(), spin_r.tolist()):
            drive_wheels(client, body, left, right)
        for _ in range(self._substeps):
            p.stepSimulation(physicsClientId=client)
        angles = np.empty_like(self._wheel_angles)
        hit_static = np.zeros(len(self._bodies), dtype=bool)
        hit_robot = np.zeros(len(self._bodies), dtype=bool)
        for i, body in enumerate(self._bodies):
            (x, y, _), quat = p.getBasePositionAndOrientation(body, physicsClientId=client)
            (vx, vy, _), (_, _, wz) = p.getBaseVelocity(body, physicsClientId=client)
            yaw = p.getEulerFromQuaternion(quat)[2]
            self._x[i], self._y[i], self._th[i] = x, y, yaw
            self._v[i], self._w[i] = vx * np.cos(yaw) + vy * np.sin(yaw), wz
            angles[i] = [state[0] for state in p.getJointStates(body, [0, 1], physicsClientId=client)]
            others = {contact[2] for contact in p.getContactPoints(bodyA=body, physicsClientId=client)}
            hit_static[i] = bool(others & (self._static | self._pool.bodies))
            hit_robot[i] = bool(others & self._robot_bodies)
        travel = (angles - self._wheel_angles) * self._wheel_r[:, None]
        self._wheel_angles = angles
        return travel[:, 0], travel[:, 1], hit_static, hit_robot

    def _count_contacts(
        self, hit_static: np.ndarray, gap: np.ndarray, hit_robot: np.ndarray, robot_gap: np.ndarray
    ) -> None:
        """Count each contact episode once: it starts with a hit and lasts while the robot stays within the margin."""
        self._collisions += hit_static & ~self._touching
        self._touching = hit_static | (self._touching & (gap < CONTACT_MARGIN_M))
        self._robot_contacts += hit_robot & ~self._touching_robot
        self._touching_robot = hit_robot | (self._touching_robot & (robot_gap < CONTACT_MARGIN_M))

    def _sense(self, dl: np.ndarray, dr: np.ndarray, travelled: np.ndarray) -> None:
        """Feed this tick's true motion to the instruments and the ground truth."""
        self._true_m += travelled
        self._odometer.update(dl, dr)
        xy = np.stack([self._x, self._y], axis=1)
        self._gnss.update(self.time_s, xy)
        self._battery.update(travelled, self._load_kg, xy, self._v)

    def _place_bodies(self) -> None:
        """Move the kinematic robots' GUI bodies that moved since they were last placed (one call per body)."""
        client = self._client
        moved = np.flatnonzero(self._dirty)
        half = self._th[moved] / 2
        for body, x, y, qz, qw in zip(
            [self._bodies[i] for i in moved], self._x[moved].tolist(), self._y[moved].tolist(),
            np.sin(half).tolist(), np.cos(half).tolist(),
        ):
            p.resetBasePositionAndOrientation(body, (x, y, 0.0), (0.0, 0.0, qz, qw), physicsClientId=client)
        self._dirty[moved] = False

    # --------------------------------------------------------------------------------------- sensors

    def _read(self) -> _Readings:
        """This tick's instrument readings of every robot as Python values, made on the first read after a change."""
        if self._readings is None:
            o, g, b = self._odometer, self._gnss, self._battery
            self._readings = _Readings(
                odometry=np.column_stack([o.pose, o.v, o.w, o.distance]).tolist(),
                gnss=np.column_stack([g.t, g.xy]).tolist(),
                battery=(b.wh / b.capacity_wh).tolist(),
                charging=b.charging.tolist(),
            )
        return self._readings

    def odometry(self, i: int) -> tuple[float, float, float, float, float, float, float]:
        """Robot ``i``'s wheel odometry: (t, x, y, theta, v, w, distance_m) in its own drifting odometry frame."""
        x, y, th, v, w, distance = self._read().odometry[i]
        return self.time_s, x, y, th, v, w, distance

    def gnss(self, i: int) -> tuple[float, float, float, float] | None:
        """Robot ``i``'s latest GNSS fix (t, x, y, sigma_m) in the world frame, or None before the first."""
        t, x, y = self._read().gnss[i]
        return None if t != t else (t, x, y, self._gnss_sigma)  # t is nan before the first fix

    def scan(self, i: int) -> tuple[float, np.ndarray] | None:
        """Robot ``i``'s latest lidar scan: its time and ranges (float32, inf = no return); None before the first.

        The row belongs to that scan alone: later scans are new arrays, so it never changes under the caller.
        """
        if i >= len(self._scans):
            return None
        return self._scan_t, self._scans[i]

    def nearest(self, i: int) -> float:
        """The shortest range in robot ``i``'s latest scan (inf: nothing in range), computed for all robots at once."""
        return self._nearest[i] if i < len(self._nearest) else float("inf")

    def battery(self, i: int) -> float:
        """Robot ``i``'s state of charge, 0..1."""
        return self._read().battery[i]

    def charging(self, i: int) -> bool:
        """Whether robot ``i`` is charging (stopped within reach of a charger)."""
        return self._read().charging[i]

    @property
    def batteries(self) -> np.ndarray:
        """State of charge of every robot, 0..1."""
        return self._battery.soc

    def _poses(self) -> np.ndarray:
        return np.stack([self._x, self._y, self._th], axis=1)

    @property
    def truth(self) -> GroundTruth:
        """The exact state of the fleet now (a copy), for measurement only."""
        return GroundTruth(
            poses=self._poses(),
            speeds=self._v.copy(),
            odometer_m=self._true_m.copy(),
            collisions=self._collisions.copy(),
            robot_contacts=self._robot_contacts.copy(),
            steps=self._steps,
        )

    # ---------------------------------------------------------------------------------------- life

    def close(self) -> None:
        """Disconnect the PyBullet client; the world cannot step afterwards."""
        if not self._closed:
            self._closed = True
            with silenced():
                p.disconnect(physicsClientId=self._client)

    def __enter__(self) -> World:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
