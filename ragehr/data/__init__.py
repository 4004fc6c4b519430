"""Data files shipped with ragehr (read with importlib.resources)."""
