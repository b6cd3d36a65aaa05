"""danemap.stats."""
