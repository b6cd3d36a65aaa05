"""danemap.simulate."""
