"""Backbones and projectors, registered under "backbone" and "projector" (SPEC section 3)."""
