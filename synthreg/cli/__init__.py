"""synthreg.cli."""
