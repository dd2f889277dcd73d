"""The sweep engine: grids, trial ids, the ledger, scheduling on Ray, resume."""
