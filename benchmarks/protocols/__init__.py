"""Versioned protocol files (YAML). Bump ``version`` whenever a change moves numbers."""
