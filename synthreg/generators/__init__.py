"""synthreg.generators."""
