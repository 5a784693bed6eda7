"""SSL objectives as nn.Modules, registered under "objective" (SPEC section 2).

``build("objective", name, **kw)`` returns a module called as ``loss(z1, z2)`` (BYOL:
``loss(z1, z2, t1, t2)``); each fills ``last_stats`` on forward. DDP conventions:
``dimcollapse/utils/distributed.py``.
"""

from dimcollapse.objectives.barlow_twins import BarlowTwins
from dimcollapse.objectives.base import Objective
from dimcollapse.objectives.byol import BYOL, cosine_momentum
from dimcollapse.objectives.directclr import DirectCLR
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.objectives.simclr import NTXent
from dimcollapse.objectives.simsiam import SimSiam
from dimcollapse.objectives.vicreg import VICReg
from dimcollapse.utils.batchnorm import GlobalBatchNorm1d, GlobalBatchNorm2d, convert_to_global_batchnorm
from dimcollapse.utils.distributed import local_only
from dimcollapse.utils.ema import ema_update

__all__ = [
    "BYOL",
    "BarlowTwins",
    "DirectCLR",
    "GlobalBatchNorm1d",
    "GlobalBatchNorm2d",
    "NTXent",
    "Objective",
    "Predictor",
    "SimSiam",
    "VICReg",
    "convert_to_global_batchnorm",
    "cosine_momentum",
    "ema_update",
    "local_only",
]
