"""Small shared helpers (atomic file writes, seeding) used by every layer above diagnostics."""
