"""danemap.report."""
