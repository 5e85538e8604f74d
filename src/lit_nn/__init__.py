"""lit-nn."""
