"""Reconciliation (R1-R9): channel statements parsed into one normalised store, matched against
our payment flow records in DuckDB, differences classified, handled and booked."""
