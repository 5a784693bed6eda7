"""dimcollapse: measure, explain and prevent dimensional collapse in self-supervised learning.

Layers (an arrow points to what a layer may import)::

    cli -> study/report -> training -> objectives, regularizers, models, data
                                    \\-> diagnostics
    theory -> diagnostics
    diagnostics -> (torch, numpy only)
"""

from dimcollapse.errors import ConfigError, DimCollapseError, InputError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DimCollapseError", "InputError", "__version__"]
