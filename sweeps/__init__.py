"""The named studies (shipped as the package cotsweep.sweeps)."""
