"""SSL objectives as nn.Modules, registered under "objective" (SPEC section 2).

``build("objective", name, **kw)`` returns a module called as ``loss(z1, z2)`` (BYOL:
``loss(z1, z2, t1, t2)``; multi-view objectives also ``forward_views(zs, ts)``); each fills
``last_stats`` (detached tensors) on forward. Pure terms: scheduled values (DINO's teacher temperature,
SwAV's queue start) are keyword arguments, the EMA momentum is the run's (``training/schedules.py``).
DDP conventions: ``utils/distributed.py``; EMA copies: ``momentum.py``.
"""

from dimcollapse.objectives.barlow_twins import BarlowTwins
from dimcollapse.objectives.base import Objective
from dimcollapse.objectives.byol import BYOL
from dimcollapse.objectives.dcl import DCL
from dimcollapse.objectives.dino import DINO
from dimcollapse.objectives.directclr import DirectCLR
from dimcollapse.objectives.mocov2 import MoCoV2Plus
from dimcollapse.objectives.mocov3 import MoCoV3
from dimcollapse.objectives.momentum import EMACopy, ema_update
from dimcollapse.objectives.msn import MSN
from dimcollapse.objectives.nnbyol import NNBYOL
from dimcollapse.objectives.nnclr import NNCLR
from dimcollapse.objectives.predictor import Predictor
from dimcollapse.objectives.queue import FeatureQueue
from dimcollapse.objectives.ressl import ReSSL
from dimcollapse.objectives.simclr import NTXent
from dimcollapse.objectives.simsiam import SimSiam
from dimcollapse.objectives.swav import SwAV
from dimcollapse.objectives.vibcreg import VIbCReg
from dimcollapse.objectives.vicreg import VICReg
from dimcollapse.objectives.wmse import WMSE
from dimcollapse.utils.batchnorm import GlobalBatchNorm1d, GlobalBatchNorm2d, convert_to_global_batchnorm
from dimcollapse.utils.distributed import local_only

__all__ = [
    "BYOL",
    "DCL",
    "DINO",
    "MSN",
    "NNBYOL",
    "NNCLR",
    "WMSE",
    "BarlowTwins",
    "DirectCLR",
    "EMACopy",
    "FeatureQueue",
    "GlobalBatchNorm1d",
    "GlobalBatchNorm2d",
    "MoCoV2Plus",
    "MoCoV3",
    "NTXent",
    "Objective",
    "Predictor",
    "ReSSL",
    "SimSiam",
    "SwAV",
    "VICReg",
    "VIbCReg",
    "convert_to_global_batchnorm",
    "ema_update",
    "local_only",
]
