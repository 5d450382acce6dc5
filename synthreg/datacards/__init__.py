"""synthreg.datacards."""
