"""danemap.engine."""
