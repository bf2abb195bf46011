"""PyBullet bodies of the world: static buildings, robots, and a recycling pool for moving obstacles.

Buildings can be merged into a few static triangle meshes, which Bullet casts rays against far faster than
against one box body each. Collision shapes are cached by their extents. Visual shapes are made only for the GUI;
DIRECT clients do not need them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from sim.geometry import Box
from sim.quiet import import_pybullet

p = import_pybullet()

PARK_Z = -100.0  # where an obstacle waits, out of every ray's way, while it is not active
BUILDING_RGBA = (0.62, 0.64, 0.68, 1.0)
OBSTACLE_RGBA = (0.95, 0.55, 0.15, 1.0)
ROBOT_RGBA = (0.15, 0.45, 0.85, 1.0)
GROUND_RGBA = (0.35, 0.38, 0.35, 1.0)
GROUND_VIEW_M = 2000.0
WHEEL_MASS_KG = 1.0
WHEEL_WIDTH_M = 0.05
MOTOR_FORCE_NM = 20.0
STATIC_CELL_M = 100.0  # buildings whose centres share a square this wide share one mesh body
_MESH_MAX_BOXES = 4096  # PyBullet takes at most 131072 vertices per mesh shape
_CORNERS = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [-1, -1, 2], [1, -1, 2], [1, 1, 2], [-1, 1, 2]])
_FACES = np.array([[0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
                   [4, 5, 6], [4, 6, 7]])  # a box's four walls and its roof, wound outwards; nothing stands below


class Shapes:
    """One PyBullet client's shape cache: each distinct shape is created once and shared by every body using it."""

    def __init__(self, client: int, gui: bool) -> None:
        self.client = client
        self.gui = gui
        self._collision: dict[tuple, int] = {}
        self._visual: dict[tuple, int] = {}

    def box(self, half_x: float, half_y: float, height: float) -> int:
        """The collision shape of a box with these half extents and full height."""
        key = ("box", half_x, half_y, height)
        if key not in self._collision:
            half = [half_x, half_y, height / 2]
            self._collision[key] = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        return self._collision[key]

    def box_visual(self, half_x: float, half_y: float, height: float, rgba: Sequence[float]) -> int:
        """The GUI look of such a box (-1, no visual, outside the GUI)."""
        if not self.gui:
            return -1
        key = ("box", half_x, half_y, height, tuple(rgba))
        if key not in self._visual:
            half = [half_x, half_y, height / 2]
            self._visual[key] = p.createVisualShape(
                p.GEOM_BOX, halfExtents=half, rgbaColor=list(rgba), physicsClientId=self.client
            )
        return self._visual[key]

    def cylinder_visual(self, radius: float, height: float, z_offset: float) -> int:
        """The GUI look of a robot: an upright cylinder whose centre sits ``z_offset`` above the body origin."""
        if not self.gui:
            return -1
        key = ("cylinder", radius, height, z_offset)
        if key not in self._visual:
            self._visual[key] = p.createVisualShape(
                p.GEOM_CYLINDER, radius=radius, length=height, rgbaColor=list(ROBOT_RGBA),
                visualFramePosition=[0, 0, z_offset], physicsClientId=self.client,
            )
        return self._visual[key]


def add_ground(shapes: Shapes, size_m: float | None) -> int:
    """A static ground whose top is z = 0: an infinite plane, or a square slab ``size_m`` wide."""
    client = shapes.client
    half = (size_m or GROUND_VIEW_M) / 2  # PyBullet has no look for a plane: show a slab this wide instead
    visual = shapes.box_visual(half, half, 0.02, GROUND_RGBA)
    if size_m is None:
        shape = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=client)
        return p.createMultiBody(0, shape, visual, [0, 0, 0], physicsClientId=client)
    return p.createMultiBody(0, shapes.box(half, half, 0.02), visual, [0, 0, -0.01], physicsClientId=client)


def add_boxes(shapes: Shapes, boxes: Sequence[Box], *, merged: bool = True) -> list[int]:
    """The colliding static bodies for ``boxes``: a triangle mesh per :data:`STATIC_CELL_M` square, or a box each.

    Merged boxes get visual-only bodies in the GUI. A ray that starts inside a box body reports nothing; one that
    starts inside a mesh reports the mesh's far side.
    """
    if not merged:
        return _box_bodies(shapes, boxes, collide=True)
    cells: dict[tuple[int, int], list[Box]] = {}
    for b in boxes:
        cells.setdefault((math.floor(b.x / STATIC_CELL_M), math.floor(b.y / STATIC_CELL_M)), []).append(b)
    bodies = [
        p.createMultiBody(0, _mesh(shapes.client, members[k : k + _MESH_MAX_BOXES]), physicsClientId=shapes.client)
        for members in cells.values()
        for k in range(0, len(members), _MESH_MAX_BOXES)
    ]
    if shapes.gui:
        _box_bodies(shapes, boxes, collide=False)
    return bodies


def _mesh(client: int, boxes: Sequence[Box]) -> int:
    """One static triangle-mesh collision shape holding every box of ``boxes``, in world coordinates."""
    centres = np.array([(b.x, b.y, 0.0) for b in boxes])
    halves = np.array([(b.half_x, b.half_y, b.height / 2) for b in boxes])
    vertices = centres[:, None, :] + _CORNERS * halves[:, None, :]
    indices = _FACES + 8 * np.arange(len(boxes))[:, None, None]
    return p.createCollisionShape(
        p.GEOM_MESH, vertices=vertices.reshape(-1, 3).tolist(), indices=indices.ravel().tolist(), physicsClientId=client
    )


def _box_bodies(shapes: Shapes, boxes: Sequence[Box], *, collide: bool) -> list[int]:
    """A static body per box, colliding or only visual, batched by size; ids in the order of ``boxes``."""
    groups: dict[tuple[float, float, float], list[int]] = {}
    for k, b in enumerate(boxes):
        groups.setdefault((b.half_x, b.half_y, b.height), []).append(k)
    ids = [0] * len(boxes)
    for (half_x, half_y, height), members in groups.items():
        collision = shapes.box(half_x, half_y, height) if collide else -1
        visual = shapes.box_visual(half_x, half_y, height, BUILDING_RGBA)
        positions = [[boxes[k].x, boxes[k].y, height / 2] for k in members]
        made = p.createMultiBody(0, collision, visual, batchPositions=positions, physicsClientId=shapes.client)
        for k, body in zip(members, made if isinstance(made, Sequence) else [made]):
            ids[k] = body
    return ids


def add_robot_looks(
    shapes: Shapes, radius: float, height: float, positions: Sequence[tuple[float, float]]
) -> list[int]:
    """Visual-only GUI bodies for robots the world moves itself, one batch for robots of one size.

    Rays and contacts pass through them: the world computes what they would block. Body origins are on the ground.
    """
    visual = shapes.cylinder_visual(radius, height, height / 2)
    batch = [[x, y, 0.0] for x, y in positions]
    made = p.createMultiBody(0, -1, visual, batchPositions=batch, physicsClientId=shapes.client)
    return list(made) if isinstance(made, Sequence) else [made]


def add_wheeled_robot(
    shapes: Shapes,
    *,
    x: float,
    y: float,
    theta: float,
    radius: float,
    height: float,
    wheel_base: float,
    wheel_radius: float,
    mass_kg: float,
) -> int:
    """A dynamic differential-drive robot: a cylinder chassis on two driven wheels and two casters.

    Joint 0 is the left wheel, joint 1 the right; both spin forward about +y.

    The body origin is on the wheel axle; the casters are frictionless spheres at the chassis front and back.
    """
    client = shapes.client
    caster = wheel_radius / 2
    chassis_h = height - wheel_radius
    base = p.createCollisionShapeArray(
        [p.GEOM_CYLINDER, p.GEOM_SPHERE, p.GEOM_SPHERE],
        radii=[radius, caster, caster],
        lengths=[chassis_h, 0.0, 0.0],
        collisionFramePositions=[
            [0, 0, chassis_h / 2],
            [0.7 * radius, 0, caster - wheel_radius],
            [-0.7 * radius, 0, caster - wheel_radius],
        ],
        physicsClientId=client,
    )
    axle_along_y = p.getQuaternionFromEuler([math.pi / 2, 0, 0])
    wheel = p.createCollisionShape(
        p.GEOM_CYLINDER, radius=wheel_radius, height=WHEEL_WIDTH_M,
        collisionFrameOrientation=axle_along_y, physicsClientId=client,
    )
    visual = shapes.cylinder_visual(radius, chassis_h, chassis_h / 2)
    body = p.createMultiBody(
        mass_kg - 2 * WHEEL_MASS_KG, base, visual, [x, y, wheel_radius],
        p.getQuaternionFromEuler([0, 0, theta]),
        linkMasses=[WHEEL_MASS_KG] * 2,
        linkCollisionShapeIndices=[wheel, wheel],
        linkVisualShapeIndices=[-1, -1],
        linkPositions=[[0, wheel_base / 2, 0], [0, -wheel_base / 2, 0]],
        linkOrientations=[[0, 0, 0, 1]] * 2,
        linkInertialFramePositions=[[0, 0, 0]] * 2,
        linkInertialFrameOrientations=[[0, 0, 0, 1]] * 2,
        linkParentIndices=[0, 0],
        linkJointTypes=[p.JOINT_REVOLUTE] * 2,
        linkJointAxis=[[0, 1, 0]] * 2,
        physicsClientId=client,
    )
    p.changeDynamics(body, -1, lateralFriction=0.0, rollingFriction=0.0, spinningFriction=0.0, physicsClientId=client)
    for wheel_link in (0, 1):
        p.changeDynamics(body, wheel_link, lateralFriction=1.0, physicsClientId=client)
    return body


def drive_wheels(client: int, body: int, left_rad_s: float, right_rad_s: float) -> None:
    """Set the wheel motors of a robot from :func:`add_wheeled_robot` to these spin rates."""
    p.setJointMotorControlArray(
        body, [0, 1], p.VELOCITY_CONTROL, targetVelocities=[left_rad_s, right_rad_s],
        forces=[MOTOR_FORCE_NM, MOTOR_FORCE_NM], physicsClientId=client,
    )


class ObstaclePool:
    """Static bodies for obstacles that come and go: made on first need, moved while active, parked below ground after.

    A parked body is reused by the next obstacle of the same size, so bodies are never removed or remade.
    """

    def __init__(self, shapes: Shapes) -> None:
        self._shapes = shapes
        self._live: dict[str, tuple[int, Box]] = {}
        self._parked: dict[tuple[float, float, float], list[int]] = {}
        self.bodies: set[int] = set()

    def show(self, active: Mapping[str, Box]) -> None:
        """Make the bodies match ``active`` (obstacle id -> box now)."""
        client = self._shapes.client
        for oid in [oid for oid in self._live if oid not in active]:
            self._park(*self._live.pop(oid))
        for oid, box in active.items():
            held = self._live.get(oid)
            if held is not None and held[1] == box:
                continue
            if held is not None and _size(held[1]) != _size(box):
                self._park(*held)
                held = None
            body = held[0] if held is not None else self._take(box)
            where = [box.x, box.y, box.height / 2]
            p.resetBasePositionAndOrientation(body, where, [0, 0, 0, 1], physicsClientId=client)
            self._live[oid] = (body, box)

    def _park(self, body: int, box: Box) -> None:
        p.resetBasePositionAndOrientation(body, [0, 0, PARK_Z], [0, 0, 0, 1], physicsClientId=self._shapes.client)
        self._parked.setdefault(_size(box), []).append(body)

    def _take(self, box: Box) -> int:
        spare = self._parked.get(_size(box))
        if spare:
            return spare.pop()
        shapes = self._shapes
        body = p.createMultiBody(
            0, shapes.box(box.half_x, box.half_y, box.height),
            shapes.box_visual(box.half_x, box.half_y, box.height, OBSTACLE_RGBA),
            [box.x, box.y, box.height / 2], physicsClientId=shapes.client,
        )
        self.bodies.add(body)
        return body


def _size(box: Box) -> tuple[float, float, float]:
    return box.half_x, box.half_y, box.height
