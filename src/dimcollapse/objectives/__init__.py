"""SSL objectives as nn.Modules, registered under "objective" (SPEC section 2)."""
