"""Experiments that compare policies end to end in the simulator."""
