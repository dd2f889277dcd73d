"""cotsweep."""
