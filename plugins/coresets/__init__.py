"""Coreset-selection methods written from their papers (no external coreset library)."""
