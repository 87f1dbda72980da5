"""Backends: reference (numpy), and the FHE schemes. Each loads its library lazily."""
