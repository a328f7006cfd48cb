"""Population algorithms (placeholder docstring, replaced below)."""
