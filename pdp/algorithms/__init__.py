"""Population algorithms: stratification, pathways, the territory report."""
