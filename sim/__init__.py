"""The hardware layer in simulation: the PyBullet world, robot bodies and sensors, ground truth."""
