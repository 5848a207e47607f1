"""Plotting recipes, one module per chapter."""
