"""Prompt tuning of the anatomy token embeddings (paper Section 3.3, eq. 2-4)."""
