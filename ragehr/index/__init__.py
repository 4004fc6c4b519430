"""Persistent per-patient indexes: building them (``build``), reading them back with every
check (``store``), and searching them (``search``). Imports nothing heavy at import time."""
