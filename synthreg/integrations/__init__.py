"""synthreg.integrations."""
