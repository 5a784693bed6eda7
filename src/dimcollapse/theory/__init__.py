"""Toy linear models of DirectCLR's collapse theory (SPEC section 5), checked with diagnostics."""
