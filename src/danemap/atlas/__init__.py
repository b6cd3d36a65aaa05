"""danemap.atlas."""
