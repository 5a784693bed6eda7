"""The run configuration's schema: one dataclass per block, the valid choices, and ``to_dict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

OPTIMIZERS = ("sgd", "lars", "adamw")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "auto")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")
VIEW_RECIPES = ("simclr", "byol", "none")
PROBE_KINDS = ("lbfgs", "sgd")
KNN_STORAGE = ("float32", "float16", "bfloat16")
PROBE_DTYPES = ("float32", "float64")


@dataclass
class ViewsConfig:
    """Batched view augmentation (dimcollapse.data.views.ViewAugment)."""

    recipe: str = "simclr"
    n_views: int = 2
    image_size: int | None = None  # side of the views fed to the backbone; None: the dataset's
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Dataset name and root, the subset fraction, batch size and views."""

    name: str = "fashion_mnist"
    root: str | None = None
    fraction: float = 1.0
    batch_size: int = 256  # per process and per micro-batch (global: x processes x accumulation)
    num_workers: int = 0
    pin_memory: bool = False  # page-locked batches for faster host-to-GPU copies (used on CUDA only)
    persistent_workers: bool = False  # keep loader workers between epochs (needs num_workers >= 1)
    prefetch_factor: int | None = None  # batches each worker loads ahead (needs num_workers >= 1)
    kwargs: dict[str, Any] = field(default_factory=dict)
    views: ViewsConfig = field(default_factory=ViewsConfig)


@dataclass
class ModelConfig:
    """Backbone and projector names (registry) with their keyword arguments."""

    backbone: str = "small_resnet"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    projector: str = "mlp"
    projector_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """The SSL loss (registry name) and its keyword arguments."""

    name: str = "simclr"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepConfig:
    """The training step's shape (registry kind "step") and its keyword arguments; ``name`` None: the
    objective's ``default_step`` ("views": encode the views, then the loss; msn: "masked")."""

    name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RegularizerConfig:
    """One anti-collapse regularizer (registry name) and its keyword arguments (weight, schedule, ...)."""

    name: str = "so"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EMAConfig:
    """The momentum target's EMA: tau from base_momentum to final_momentum by a cosine over the run.

    None: the objective's default (BYOL 0.99 -> 1, DINO 0.996 -> 1; ``default_momentum``)."""

    base_momentum: float | None = None
    final_momentum: float | None = None


@dataclass
class OptimConfig:
    """Optimizer (sgd | lars | adamw), learning rate schedule (linear warm-up + cosine) and length."""

    name: str = "lars"
    lr: float = 0.3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lars_eta: float = 0.02
    warmup_epochs: float = 1.0
    min_lr_fraction: float = 0.0
    epochs: int = 10
    max_steps: int | None = None
    max_time_minutes: float | None = None


@dataclass
class TrainerConfig:
    """Lightning trainer settings: devices and nodes, gradient accumulation, precision, seed, logging and
    checkpoint cadence."""

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1  # > 1 under a multi-node launcher only (srun, torchrun)
    accumulate_grad_batches: int = 1  # micro-batches per optimizer step
    strategy: str = "auto"
    precision: str = "32-true"
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    seed: int = 0
    log_every: int = 10
    sync_batchnorm: bool = False
    checkpoint_every: int = 100
    progress_bar: bool = True
    tensorboard: bool = True  # False drops "tensorboard" from loggers
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # + wandb, mlflow
    # kernel choices (training/device_defaults.py); None: the device's default
    channels_last: bool | None = None  # NHWC conv backbones (CPU, CUDA: on)
    cudnn_benchmark: bool | None = None  # cuDNN autotuning (CUDA: on)
    tf32: bool | None = None  # TF32 float32 matmul/conv (CUDA, compute capability >= 8.0: on)
    strided_1x1_workaround: bool | None = None  # strided 1x1 conv as subsample + 1x1 (CPU only: on)


@dataclass
class MonitorConfig:
    """Collapse monitor: every n steps on a fixed held-out probe batch."""

    enabled: bool = True
    every_n_steps: int = 50
    probe_size: int = 512
    warn_fraction: float = 0.5
    lid_k: int = 20
    weight_spectra: bool = True
    max_share: float | None = None  # a due measurement is skipped beyond this share of training time


@dataclass
class EvalConfig:
    """Final evaluation: weighted kNN, offline linear probe, online probe during training."""

    knn_k: list[int] = field(default_factory=lambda: [20, 200])
    temperature: float = 0.07
    linear_probe: bool = True
    linear_probe_epochs: int = 100
    linear_probe_weight_decay: float = 1e-4
    online_probe: bool = True
    online_probe_lr: float = 0.1
    batch_size: int = 1024
    max_train: int | None = None
    max_test: int | None = None
    lid_k: int = 20  # neighbours of the final LID estimate (needs more test images than this)
    linear_probe_kind: str = "lbfgs"  # lbfgs: fast CPU probe on centre crops; sgd: the papers' protocol
    sgd_probe_lr: float = 0.1  # the SGD probe (DirectCLR's linear_probe.py): lr, batch, weight decay
    sgd_probe_batch_size: int = 256
    sgd_probe_weight_decay: float = 1.0e-6
    sgd_probe_augment: bool = True  # random-resized crop + flip of the training images every epoch
    knn_storage: str = "float32"  # training features and kNN bank on the device: float32 | float16 | bfloat16
    probe_dtype: str = "float32"  # the L-BFGS probe's dtype: float32 | float64 (benchmarks/bench_eval.py)
    linear_probe_tolerance: float = 1.0e-9  # L-BFGS stops when the loss changes less than this


@dataclass
class RunConfig:
    """A whole training run."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    step: StepConfig = field(default_factory=StepConfig)
    regularizers: list[RegularizerConfig] = field(default_factory=list)
    ema: EMAConfig = field(default_factory=EMAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (for checkpoints and JSON)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(out, dict)
    return {str(k): v for k, v in out.items()}
