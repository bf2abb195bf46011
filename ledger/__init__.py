"""The double-entry, hash-chained ledger that records every movement of money."""
