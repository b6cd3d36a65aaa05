"""danemap.markers."""
