"""The core recipe schema: every key the engine reads, with its default and documentation.

Component entries (``data.dataset``, ``model.backbone``, ``losses.*``, ...) are mappings with a
``name`` naming a registered plugin; their other keys are that plugin's parameters and are
validated against the plugin's own schema (see :mod:`sslkit.recipe.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sslkit.params import param

Component = dict[str, Any]


@dataclass
class RunSection:
    """Where and how the run executes."""

    seed: int = param(0, "Seed of every random draw (data order, crops, masks, initialisation).", ge=0)
    device: Literal["auto", "cpu", "cuda"] = param("auto", "Training device; auto picks CUDA when available.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = param(
        "auto", "Autocast precision. auto: bf16 where bf16 is native (CUDA compute capability 8.0+, CPUs with "
        "avx512_bf16 / amx_bf16, arm64 bf16), fp32 elsewhere (emulated bf16 is about 10-20x slower than fp32); "
        "the choice is logged and saved in run_info.json. bf16 works on CPU and CUDA, fp16 (with a grad scaler) "
        "on CUDA only.")
    name: str | None = param(None, "A label for the run (TensorBoard, ablation tables).")
    num_threads: int | None = param(
        None, "CPU threads for tensor operations in each training process (null: torch's default, one per core). "
        "Lower it when other work shares the cores: oversubscribed threads slow CPU training many-fold.", ge=1)


@dataclass
class DataSection:
    """The images and how they become multi-crop batches."""

    dataset: Component = param(default_factory=lambda: {"name": "synthetic"},
                               doc="Dataset plugin and its parameters (``name`` + parameters).")
    augmentation: Component = param(default_factory=lambda: {"name": "kornia_multicrop"},
                                    doc="Multi-crop augmentation plugin and its parameters.")
    batch_size: int = param(64, "Images per process per step (the global batch is this times the world size).",
                            ge=1)
    num_workers: int = param(2, "Data-loader worker processes per training process (0: load in the main process).",
                             ge=0)
    max_bad_fraction: float = param(0.01, "Stop with an error when more than this fraction of images fail to decode.",
                                    ge=0.0, le=1.0)


@dataclass
class ModelSection:
    """The student network; the teacher is its EMA copy."""

    backbone: Component = param(default_factory=lambda: {"name": "vit"}, doc="Backbone plugin and its parameters.")
    heads: dict[str, Component] = param(default_factory=dict,
                                        doc="Projection heads by name (on the student and, as EMA copies, the "
                                            "teacher); losses refer to them by this name.")
    student_modules: dict[str, Component] = param(
        default_factory=dict, doc="Modules that exist on the student only (e.g. a BYOL predictor), by name; head "
                                  "plugins, applied where a loss's request names them.")


@dataclass
class MaskingSection:
    """Which global crops are masked and how (used when a loss needs masks)."""

    crop_policy: Component = param(default_factory=lambda: {"name": "random_fraction"},
                                   doc="Crop-selection policy: which global crops get a mask.")
    masker: Component = param(default_factory=lambda: {"name": "block"}, doc="Mask generator for the selected crops.")


@dataclass
class OptimSection:
    """AdamW (Loshchilov and Hutter 2019) and its schedules (DINOv2, Oquab et al. 2023, section 4 and appendix)."""

    param_groups: Component = param(default_factory=lambda: {"name": "dinov2"},
                                    doc="Optimizer-grouping policy (lr / weight-decay multipliers).")
    base_lr: float = param(0.004, "Learning rate at the reference batch size.", gt=0.0)
    lr_scaling: Literal["sqrt", "linear", "none"] = param(
        "sqrt", "lr = base_lr * (global_batch / reference_batch) ** 0.5 (sqrt), ** 1 (linear) or base_lr (none).")
    reference_batch_size: int = param(1024, "The batch size at which lr equals base_lr.", ge=1)
    min_lr: float = param(1e-6, "Final learning rate of the cosine schedule.", ge=0.0)
    warmup_epochs: float = param(10.0, "Linear lr warm-up length in epochs (see train.epoch_length).", ge=0.0)
    weight_decay: float = param(0.04, "Weight decay at the start of the cosine schedule.", ge=0.0)
    weight_decay_end: float = param(0.4, "Weight decay at the end of the cosine schedule.", ge=0.0)
    betas: tuple[float, float] = param((0.9, 0.999), "AdamW betas.")
    eps: float = param(1e-8, "AdamW epsilon.", gt=0.0)
    clip_grad: float | None = param(3.0, "Clip the global gradient norm to this value (null: no clipping).", gt=0.0)
    implementation: Literal["auto", "foreach", "fused", "for_loop"] = param(
        "auto", "AdamW kernel; auto: fused on CUDA and CPU, foreach elsewhere.")


@dataclass
class TeacherSection:
    """The teacher: the EMA of the student (mean teacher, Tarvainen and Valpola 2017; DINO, Caron et al.
    2021, section 3.1), or a frozen pretrained network to distil from (DINOv2, Oquab et al. 2023, section 5)."""

    mode: Literal["ema", "frozen"] = param(
        "ema", "ema: the exponential moving average of the student; frozen: a network of its own (teacher.backbone, "
        "teacher.heads, weights from teacher.init_from), never updated (distillation).")
    momentum: float = param(0.992, "EMA momentum at the start (cosine schedule to momentum_end).", ge=0.0, le=1.0)
    momentum_end: float = param(1.0, "EMA momentum at the end of the run.", ge=0.0, le=1.0)
    backbone: Component | None = param(
        None, "mode frozen: the teacher's backbone plugin and parameters (null: the student's model.backbone); it may "
        "be larger, of another width, patch size or family.")
    heads: dict[str, Component] = param(
        default_factory=dict, doc="mode frozen: the teacher's heads by name (each head of model.heads that is "
        "not listed here is built from its student definition at the teacher's width).")
    init_from: str | None = param(
        None, "mode frozen: the teacher's weights: an sslkit run directory or checkpoint (its teacher's backbone and "
        "heads), or any source model.backbone.init_from reads (backbone only).")
    init_min_fraction: float = param(
        0.9, "mode frozen: stop with an error when less than this fraction of the teacher's tensors (by count or by "
        "elements) was loaded.", ge=0.0, le=1.0)


@dataclass
class TrainSection:
    """Length, checkpoints, logging and the execution strategy."""

    max_steps: int = param(1000, "Total optimizer steps.", ge=1)
    epoch_length: int = param(1250, "Steps per 'epoch' for the schedules (the official recipes use 1250).", ge=1)
    checkpoint_every: int = param(500, "Save a checkpoint every this many steps (and always at the end).", ge=1)
    keep_checkpoints: int = param(3, "How many of the latest checkpoints to keep.", ge=1)
    log_every: int = param(10, "Log scalars (and sync with the device) every this many steps.", ge=1)
    strategy: Literal["auto", "single", "ddp", "fsdp2"] = param(
        "auto", "Multi-process strategy under torchrun; auto: ddp when the world size is above 1.")
    compile: bool = param(False, "torch.compile the backbone and heads.")
    max_nonfinite_steps: int = param(
        0, "Skip up to this many steps whose loss is NaN/inf before stopping (0: stop at the first).", ge=0)


@dataclass
class EvalSection:
    """Evaluation during and after training (kNN on a labelled train/test pair)."""

    train_data: Component | None = param(None, "Labelled dataset for the kNN memory bank (dataset plugin).")
    test_data: Component | None = param(None, "Labelled dataset to classify (dataset plugin).")
    every: int = param(0, "Run kNN every this many steps (0: only at the end).", ge=0)
    at_end: bool = param(True, "Run kNN when training ends (when train_data and test_data are set).")
    at_start: bool = param(False, "Also evaluate the initial model (to show what training added).")
    k: int = param(20, "Neighbours for the reported kNN top-1.", ge=1)
    max_train_images: int | None = param(
        None, "Use an evenly spaced subset of this many training images as the kNN memory bank (null: all).", ge=1)
    temperature: float = param(0.07, "kNN vote temperature.", gt=0.0)
    image_size: int | None = param(None, "Evaluation image size (null: the global crop size).", ge=1)
    crop_fraction: float = param(0.875, "Resize the shorter side to image_size / crop_fraction, then centre-crop "
                                 "(0.875 is the ImageNet convention; 1.0 for images already at the size).",
                                 gt=0.0, le=1.0)
    batch_size: int = param(256, "Feature-extraction batch size.", ge=1)
    with_patch_mean: bool = param(
        False, "Evaluate [CLS, mean of the patch tokens] instead of the CLS token alone (the feature masked-prediction "
        "methods such as I-JEPA and data2vec 2.0 evaluate).")


@dataclass
class MonitorSection:
    """TensorBoard images and collapse detection."""

    image_every: int = param(0, "Log the crops grid and patch PCA every this many steps (0: only at the start).",
                             ge=0)
    stop_on_collapse: bool = param(False, "Stop the run when the collapse detector fires.")
    collapse: dict[str, Any] = param(default_factory=dict, doc="Collapse-detector thresholds (see monitoring docs).")


@dataclass
class StageSection:
    """One stage of a multi-stage recipe (``sslkit train`` runs the stages in order)."""

    name: str = param(doc="The stage's name: its run directory is <output-dir>/<name>.")
    changes: dict[str, Any] = param(
        default_factory=dict, doc="Recipe keys this stage changes (nested, merged like a recipe layer); a stage "
        "after the first continues from the previous stage (init_from) unless it sets init_from itself.")


@dataclass
class Recipe:
    """A whole training recipe."""

    run: RunSection = param(default_factory=RunSection, doc="Seed, device and precision.")
    data: DataSection = param(default_factory=DataSection, doc="Dataset, augmentation and batching.")
    model: ModelSection = param(default_factory=ModelSection, doc="Backbone and heads.")
    losses: dict[str, Component] = param(default_factory=dict,
                                         doc="Loss terms by name: plugin name, weight and parameters.")
    masking: MaskingSection = param(default_factory=MaskingSection, doc="Crop selection and masks.")
    optim: OptimSection = param(default_factory=OptimSection, doc="Optimizer and schedules.")
    teacher: TeacherSection = param(default_factory=TeacherSection, doc="EMA teacher.")
    train: TrainSection = param(default_factory=TrainSection, doc="Run length and checkpoints.")
    eval: EvalSection = param(default_factory=EvalSection, doc="Evaluation.")
    monitor: MonitorSection = param(default_factory=MonitorSection, doc="Monitoring.")
    init_from: str | None = param(
        None, "Continue from a previous stage: an sslkit run directory or checkpoint whose student and teacher "
        "(backbones, heads, student-only modules) and losses' state this run starts from, position embeddings "
        "resampled to this recipe's crops; the optimizer and the schedules start afresh (report: "
        "stage_init_report.json). A checkpoint of this run's own directory (resuming) takes precedence.")
    stages: list[StageSection] = param(
        default_factory=list, doc="Several stages in one file, run in order by sslkit train (e.g. pretraining "
        "then high-resolution adaptation); empty: one stage, the recipe itself.")
