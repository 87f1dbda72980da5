"""Converters (to be written)."""
