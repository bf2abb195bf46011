"""The on-robot agent that runs the same on a simulated body and on real hardware."""
