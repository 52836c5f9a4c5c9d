"""Test media generated at run time (no binary fixtures)."""
