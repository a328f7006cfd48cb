"""Population algorithms: stratification, pathways, and the disclosure control of what they publish."""
