"""Helpers the tests and the benchmarks share: scratch and bootstrapped databases, logins,
Citus worker discovery. Not in the wheel."""
