"""danemap.io."""
