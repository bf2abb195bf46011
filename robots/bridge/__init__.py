"""The hardware bridge: a real robot in the fleet, its agent driving the robot over a JSON adapter."""
