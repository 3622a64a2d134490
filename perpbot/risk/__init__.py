"""Pre-trade risk: pure functions over a portfolio snapshot (no I/O)."""
