"""pybullet-fleet's side of benchmarks/fleet.py: one robot count, run in the venv that has pybullet-fleet.

Run by benchmarks/fleet.py (not by hand): it needs numpy<2, so it runs under
benchmarks/.venv-pybullet-fleet's Python and imports nothing of this project.
It reads one JSON job on stdin (the city's buildings, the robots' start poses,
the drop-off places, the robot's limits, the warm-up, and the seconds and number of
measured windows) and prints one JSON line of results on stdout.

The workload is the closest pybullet-fleet 0.8.0 offers to ours: the buildings
as static boxes; every robot a 0.35 m sphere Agent under the batch
differential-drive controller (physics off, as its scale examples do), driving
straight to a random drop-off place and given a new one as soon as it stops
moving; its own per-step collision check left at its default (robot-robot,
closest points). pybullet-fleet has no lidar, no road planner, no avoidance of
buildings, no battery model and no message signing, so none of those run here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings


def main() -> int:
    job = json.load(sys.stdin)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # its INFO/WARNING chatter is not a result
    # pybullet prints its build banner on import and connect: keep fd 1 for the JSON line only.
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        result = run(job)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    print(json.dumps(result), flush=True)
    return 0


def run(job: dict) -> dict:
    import importlib.metadata

    import numpy as np
    from pybullet_fleet import MultiRobotSimulationCore, Pose, SimObject, SimulationParams
    from pybullet_fleet.agent import AgentSpawnParams
    from pybullet_fleet.agent_manager import AgentManager
    from pybullet_fleet.sim_object import ShapeParams, SimObjectSpawnParams
    from pybullet_fleet.types import CollisionMode

    dt, z, radius = job["dt"], job["z_m"], job["radius_m"]
    sim = MultiRobotSimulationCore(SimulationParams(
        target_rtf=0, gui=False, monitor=False, enable_monitor_gui=False, physics=False, timestep=dt,
        log_level="error", enable_floor=False, enable_time_profiling=False,
    ))
    for x, y, half_x, half_y, height in job["buildings"]:
        box = ShapeParams(shape_type="box", half_extents=[half_x, half_y, height / 2])
        SimObject.from_params(SimObjectSpawnParams(
            visual_shape=box, collision_shape=box, initial_pose=Pose.from_xyz(x, y, height / 2), mass=0.0,
            pickable=False, collision_mode=CollisionMode.STATIC,
        ), sim_core=sim)
    manager = AgentManager(sim_core=sim, fleet_controller={"type": "batch_differential"})
    sphere = ShapeParams(shape_type="sphere", radius=radius)
    controller = {
        "type": "differential", "max_linear_vel": job["max_speed_mps"], "max_linear_accel": job["max_accel_mps2"],
        "max_angular_vel": job["max_turn_rps"], "max_angular_accel": job["max_alpha_rps2"],
    }
    agents = manager.spawn_objects_batch([
        AgentSpawnParams(visual_shape=sphere, collision_shape=sphere, initial_pose=Pose.from_yaw(x, y, z, theta),
                         mass=0.0, controller=dict(controller), name=f"robot{i}")
        for i, (x, y, theta) in enumerate(job["starts"])
    ])
    places = job["places"]
    rng = np.random.default_rng([job["seed"], 2])
    tally = {"arrivals": 0, "goals": 0}

    def send(agent) -> None:
        gx, gy = places[int(rng.integers(len(places)))]
        agent.set_goal_pose(Pose.from_xyz(gx, gy, z))
        tally["goals"] += 1

    for agent in agents:
        send(agent)
    sim.initialize_simulation()

    def tick() -> None:
        sim.step_once()
        for agent in agents:
            if not agent.is_moving:
                tally["arrivals"] += 1
                send(agent)

    for _ in range(round(job["warmup_s"] / dt)):
        tick()
    ticks = round(job["seconds"] / dt)
    windows = []
    for _ in range(job["rounds"]):
        arrivals = tally["arrivals"]
        began = time.perf_counter()
        for _ in range(ticks):
            tick()
        wall = time.perf_counter() - began
        windows.append({"sim_s": ticks * dt, "wall_s": wall, "arrivals": tally["arrivals"] - arrivals})
    return {
        "version": importlib.metadata.version("pybullet-fleet"), "robots": len(agents),
        "buildings": len(job["buildings"]), "numpy": np.__version__, "windows": windows,
    }


if __name__ == "__main__":
    sys.exit(main())
