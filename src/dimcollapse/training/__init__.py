"""The Lightning training engine: SSL module, callbacks, evaluation, config."""
