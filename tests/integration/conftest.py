"""Integration tests talk to real services; their fixtures live in ``tests/conftest.py``."""
