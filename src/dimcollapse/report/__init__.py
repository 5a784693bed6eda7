"""Figures and the self-contained HTML collapse report."""
