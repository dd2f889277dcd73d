"""Hydra config groups of cotsweep (shipped as the package cotsweep.conf)."""
