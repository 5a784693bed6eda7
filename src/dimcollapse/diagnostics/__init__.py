"""Pure collapse diagnostics: functions of tensors/arrays, no training code (SPEC section 1)."""
