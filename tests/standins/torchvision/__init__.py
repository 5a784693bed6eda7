"""Test stand-in for torchvision (see tests/standins/README.md): only ``torchvision.models``."""

from torchvision import models

__all__ = ["models"]
