"""dimcollapse: measure, explain and prevent dimensional collapse in self-supervised learning.

Layers (an arrow points to what a layer may import; the exact table is docs/architecture.md, enforced
by tests/test_architecture.py)::

    cli -> analysis -> report -> study -> training -> objectives, regularizers -> models, data
    report -> theory -> diagnostics;  training -> track -> diagnostics
    errors, registry, utils, contracts <- everyone
"""

from dimcollapse.errors import ConfigError, DimCollapseError, InputError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DimCollapseError", "InputError", "__version__"]
