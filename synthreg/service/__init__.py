"""The web face of the registry: ``registry serve``."""
