"""Training steps, registered under "step": the shape of one SSL step (``contracts.TrainingStep``).

``views`` (``views.py``) is every objective's default: encode the views, then the loss. ``masked``
(``masked.py``) masks patches of the online views and predicts the target network's embedding of the
unmasked views (MSN, ``objectives/msn.py``). A config names one with ``step: {name, kwargs}``; without
it the objective's ``default_step`` is used.
"""

from dimcollapse.training.steps.base import encode_views, pairwise_loss
from dimcollapse.training.steps.masked import MaskedStep, mask_patches
from dimcollapse.training.steps.views import ViewsStep

__all__ = ["MaskedStep", "ViewsStep", "encode_views", "mask_patches", "pairwise_loss"]
