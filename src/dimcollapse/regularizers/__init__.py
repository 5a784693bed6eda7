"""Anti-collapse regularizers, registered under "regularizer" (SPEC section 4)."""
