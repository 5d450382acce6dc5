"""synthreg.registry."""
