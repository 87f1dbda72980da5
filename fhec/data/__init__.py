"""Data shipped inside the package: the demo model and its test data."""
