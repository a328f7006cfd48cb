"""Population data platform (PDP).

Edge (ingest + pseudonym) → lake (Delta bronze/silver/gold) → serving (api + governance).
See ARCHITECTURE.md in the shared folder and the README for the product definition.
"""

__version__ = "0.1.0"
