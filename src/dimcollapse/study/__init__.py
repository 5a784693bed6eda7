"""Grids of training runs and the gathering of their metrics."""
