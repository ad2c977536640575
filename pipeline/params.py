"""Validated parameters: ``params.yaml`` parsed into pydantic models.

Every model forbids unknown keys, so a typo fails with the full key path (``seeds.threshold.fg_pad``).
Method names are checked against their sections (pipeline/schema.py); nothing here imports torch. A CAM
method's section is validated by its own params model, imported only when read (pipeline/cams/params.py):
:func:`load_params` validates them all unless a stage asks for the structure only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator

from pipeline.cams.params import CamParams
from pipeline.clip.params import ClipParams
from pipeline.data.sizes import Rescale
from pipeline.execution.params import ExecutionParams
from pipeline.redaction import redact_url
from pipeline.schema import (
    InsidePath,
    MethodChoice,
    ParamsError,
    Precision,
    Scales,
    Strict,
    format_errors,
    read_yaml,
    validate_strictly,
)

__all__ = ["ParamsError", "PipelineParams", "load_params", "validate_params"]

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]+)$"


# --- data ------------------------------------------------------------------------------------------------
class SyntheticDataParams(Strict):
    """Knobs of the embedded synthetic VOC-layout benchmark (see pipeline/data/synthetic.py)."""

    seed: int = 0
    num_train: int = Field(1200, ge=1)
    num_val: int = Field(200, ge=1)
    image_size: int = Field(64, ge=32)
    object_counts: tuple[float, float, float] = (0.4, 0.35, 0.25)
    object_scale: tuple[float, float] = (0.32, 0.55)
    part_fraction: float = Field(0.18, gt=0, lt=1)
    context_probability: float = Field(0.85, ge=0, le=1)
    stray_context_probability: float = Field(0.15, ge=0, le=1)
    border_width: int = Field(1, ge=0)
    jpeg_quality: int = Field(92, ge=50, le=100)

    @field_validator("object_counts")
    @classmethod
    def _sums_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(value) - 1.0) > 1e-6 or min(value) < 0:
            raise ValueError("probabilities of 1, 2 and 3 objects must be ≥ 0 and sum to 1")
        return value


class VocDataParams(Strict):
    """PASCAL VOC 2012 with SegmentationClassAug (train_aug: 10,582 images)."""

    root: str = "data/VOCdevkit/VOC2012"
    train_list: InsidePath = "train_aug"
    val_list: InsidePath = "val"
    mask_dir: InsidePath = "SegmentationClassAug"
    label_file: InsidePath | None = None  # inside root: .json or IRN's .npy; null → labels from masks


class CocoDataParams(Strict):
    """COCO 2014 in the usual WSSS layout (images, class-index PNG masks, image lists)."""

    root: str = "data/coco2014"
    train_list: InsidePath = "train"
    val_list: InsidePath = "val"
    label_file: InsidePath | None = None  # inside root: .json or .npy; null → labels from masks


class DataParams(Strict):
    """``no_foreground``: what to do with an image whose mask has no foreground class (a tiny object lost under
    its 255 border, a COCO image without annotations) — ``drop`` it (counted in the manifest and the report),
    ``keep`` it as a negative, or stop (``error``). ``label_mismatch``: image-level labels that contradict the
    mask stop prepare_data (``error``) or are counted and used as given (``allow``).
    ``symlinks``: a link inside the dataset root must point inside it (``inside``), or may point anywhere
    (``follow``: an image folder linked from a shared disk)."""

    source: Literal["synthetic", "voc", "coco"] = "synthetic"
    no_foreground: Literal["drop", "keep", "error"] = "drop"
    label_mismatch: Literal["error", "allow"] = "error"
    symlinks: Literal["inside", "follow"] = "inside"
    synthetic: SyntheticDataParams = SyntheticDataParams()
    voc: VocDataParams = VocDataParams()
    coco: CocoDataParams = CocoDataParams()


# --- class-agnostic region proposals (SAM or superpixels) ----------------------------------------------------
class SuperpixelProposalParams(Strict):
    """Felzenszwalb segmentations at three scales standing for SAM's whole / part / sub-part levels."""

    scales: tuple[float, float, float] = (200.0, 60.0, 20.0)  # whole, part, sub-part (larger → bigger regions)
    sigma: float = Field(0.5, ge=0)
    min_size: int = Field(8, ge=1)  # Felzenszwalb's own minimum component size (pixels)
    min_area: int = Field(8, ge=1)  # regions smaller than this are dropped (SAM: min_mask_region_area)
    min_score: float = Field(0.0, ge=0, le=1)  # drop regions whose colour homogeneity is below this
    min_stability: float = Field(0.0, ge=0, le=1)  # drop regions whose IoU under a 1.25× scale change is below
    reference_size: int | None = Field(64, ge=1)  # side the scales / sizes are for; null: absolute pixels

    @field_validator("scales")
    @classmethod
    def _decreasing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not value[0] > value[1] > value[2] > 0:
            raise ValueError("scales must be positive and decreasing: whole > part > sub-part")
        return value


class SamProposalParams(Strict):
    """segment-anything's automatic mask generator with the FMA-WSSS settings (implementation notes)."""

    model_type: Literal["vit_h", "vit_l", "vit_b", "auto"] = "vit_h"  # auto: the type the checkpoint holds
    checkpoint: str = "models/sam_vit_h_4b8939.pth"
    points_per_side: int = Field(32, ge=1)
    points_per_batch: int = Field(64, ge=1)
    pred_iou_thresh: float = Field(0.86, ge=0, le=1)
    stability_score_thresh: float = Field(0.92, ge=0, le=1)
    box_nms_thresh: float = Field(0.7, gt=0, le=1)
    crop_n_layers: int = Field(1, ge=0)
    crop_nms_thresh: float = Field(0.7, gt=0, le=1)
    crop_overlap_ratio: float = Field(512 / 1500, ge=0, lt=1)
    crop_n_points_downscale_factor: int = Field(2, ge=1)
    min_mask_region_area: int = Field(100, ge=0)
    more_whole: float = Field(0.1, ge=0)  # added to whole masks' predicted IoU before thresholding
    nms_priority: float = Field(1.0, ge=0)  # added to whole masks' score in NMS
    precision: Precision = "fp32"  # SAM's encoder and decoder in fp32, or autocast (bf16 / fp16)


class ProposalParams(MethodChoice):
    kind = "proposal method"
    method: str = "superpixels"
    splits: tuple[Literal["train", "val"], ...] = ("train", "val")
    superpixels: SuperpixelProposalParams = SuperpixelProposalParams()
    sam: SamProposalParams = SamProposalParams()


# --- seed methods ----------------------------------------------------------------------------------------
class ConstantBackground(Strict):
    fg_pad: float = Field(0.30, ge=0, le=1)
    bg_pad: float = Field(0.05, ge=0, le=1)


class PowerBackground(Strict):
    fg_alpha: float = Field(4.0, gt=0)
    bg_alpha: float = Field(32.0, gt=0)


class ThresholdSeedParams(Strict):
    """Background by a constant pad, (1 − max_c CAM)^α, or the CAM method's own background map (``model``:
    APC, PCC); fg/bg confidence band → 255 (none with ``model``: one background score). ``crf: irn`` passes each
    thresholded argmax through IRN's label CRF before they are combined, as IRN's, CLIMS's and POLE's seeds are
    made (``step/cam_to_ir_label.py``); its kernels are pixels of ~500 px images, so the 64 px demo runs none."""

    background: Literal["constant", "power", "model"] = "constant"
    crf: Literal["none", "irn"] = "none"
    constant: ConstantBackground = ConstantBackground()
    power: PowerBackground = PowerBackground()

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdSeedParams:
        if self.constant.bg_pad > self.constant.fg_pad:
            raise ValueError("constant.bg_pad must be ≤ constant.fg_pad")
        if self.power.fg_alpha > self.power.bg_alpha:
            raise ValueError("power.fg_alpha must be ≤ power.bg_alpha")
        return self


class SamsSeedParams(Strict):
    """FMA-WSSS SAM-based seeding (SAMS): quasi-superpixel filter t_r, background exponent α (eq. 9)."""

    t_r: float = Field(0.3, gt=0, le=1)
    alpha: float = Field(0.6, gt=0)
    background: Literal["formula", "model"] = "formula"  # eq. 9, or the CAM method's own background map


class VotingSeedParams(Strict):
    """Chen et al.'s SAM voting on top of threshold seeds: a mask joins a class region P when more than
    ``mask_fraction`` of it lies in P, or it covers at least ``region_fraction`` of P."""

    threshold: ThresholdSeedParams = ThresholdSeedParams()
    mask_fraction: float = Field(0.5, ge=0, lt=1)
    region_fraction: float = Field(0.85, gt=0, le=1)


class SeedParams(MethodChoice):
    kind = "seed method"
    method: str = "sams"
    threshold: ThresholdSeedParams = ThresholdSeedParams()
    sams: SamsSeedParams = SamsSeedParams()
    voting: VotingSeedParams = VotingSeedParams()


# --- refinement of pseudo labels ---------------------------------------------------------------------------
class CrfKernelParams(Strict):
    """Dense CRF (Krähenbühl & Koltun) settings; see pipeline/refine/crf.py for the presets. The ``custom``
    default is IRN's preset with its spatial standard deviations scaled to the 64 px demo images."""

    unary: Literal["labels", "cams"]  # labels: seeds with gt_prob (IRN); cams: (1 − max)^α background (CLIP-ES)
    gt_prob: float = Field(0.7, gt=0, lt=1)
    bg_alpha: float = Field(1.0, gt=0)
    iterations: int = Field(10, ge=1)
    gaussian_sxy: float = Field(3.0, gt=0)
    gaussian_compat: float = Field(3.0, ge=0)
    bilateral_sxy: float = Field(50.0, gt=0)
    bilateral_srgb: float = Field(5.0, gt=0)
    bilateral_compat: float = Field(10.0, ge=0)
    confidence: float = Field(0.0, ge=0, le=1)  # pixels whose CRF posterior is below this become 255
    reference_size: int | None = Field(64, ge=1)  # side √(H·W) the sxy are for (scaled per image); null: pixels


class CrfRefineParams(Strict):
    """``preset`` picks IRN's, CLIP-ES's or ToCo's settings (sized for ~500 px images), or ``custom``."""

    preset: Literal["irn", "clip_es", "toco", "custom"] = "custom"
    custom: CrfKernelParams = CrfKernelParams(unary="labels", gaussian_sxy=1.0, bilateral_sxy=6.0)


class AffinityRefineParams(Strict):
    """IRN-style random walk; affinities from image boundaries (see pipeline/refine/affinity.py). IRN on VOC:
    stride 4, radius 5, beta 10, log_t 8, bg_pad 0.25; the defaults walk the 64 px demo images at stride 1.
    With ``reference_size`` r the stride is that of an r × r image and grows with the side √(H·W) / r, so the
    walk's grid (and its cost) stays about the same on larger images (500×375: stride 7)."""

    stride: int = Field(1, ge=1)
    reference_size: int | None = Field(64, ge=1)  # null: the stride in pixels
    radius: int = Field(5, ge=1)
    beta: float = Field(10.0, gt=0)
    log_t: int = Field(6, ge=0)  # 2^log_t walk steps
    bg_pad: float = Field(0.25, ge=0, le=1)
    edge_sigma: float = Field(1.0, ge=0)  # Gaussian smoothing before the Sobel boundary map


class IrnNetworkParams(Strict):
    """IRN's boundary branch: 1×1 convolutions (``level_width`` channels, GroupNorm, ReLU) on the five levels
    of a frozen ResNet, resized to the grid of ``output_stride`` and fused into one boundary logit.
    ``backbone: classifier`` reads the trained CAM method's own ResNet (the demo's; any method with one),
    ``imagenet`` a torchvision ResNet with ImageNet weights from the local cache, as IRN did (any CAM method)."""

    backbone: Literal["classifier", "imagenet"] = "classifier"
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"  # for backbone: imagenet
    output_stride: Literal[1, 2, 4] = 2  # the boundary map's (and the walk's) grid; IRN: 4 (demo: 2 on 64 px)
    level_width: int = Field(32, ge=1)


class IrnTrainingParams(Strict):
    """IRN: 3 epochs, batch 32, crop 512, SGD lr 0.1 (poly 0.9), weight decay 1e-4 (presets/irn_voc.yaml; the
    demo: batch 16, 64 px crops); pairs within ``radius`` grid cells (IRN: 10) labelled by the seeds.

    Momentum: IRN's ``misc/torchutils.py:PolyOptimizer`` calls ``torch.optim.SGD(params, lr, weight_decay)``, so
    the weight decay lands in SGD's third positional slot, ``momentum``; its own ``momentum=0.9`` is the poly
    power. ``step/train_irn.py`` sets ``weight_decay`` in each param group, so IRN ran weight decay 1e-4 *and*
    momentum 1e-4 (none, in effect). The paper states no momentum; the presets run what the code ran (1e-4), the
    demo keeps 0.9 (its figures were measured with it)."""

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    poly_power: float = Field(0.9, ge=0)
    crop_size: int = Field(64, ge=8)
    scale_range: tuple[float, float] = (1.0, 1.0)
    radius: int = Field(10, ge=2)
    min_steps: int = Field(225, ge=0)  # epochs raised to reach this many optimiser steps (the demo's 3 × 75)


class IrnWalkParams(Strict):
    """IRN's random walk on the learned boundaries: radius 5, β 10, 2^8 steps, background pad 0.25. The demo
    walks 2^6 steps, as the image-edge walk does: its 32 × 32 grid is mixed long before 2^8 (IRN walks ~125 × 94
    cells; measured here, 2^8 gave 0.247 refined mIoU against 0.292 at 2^6, stride 4 gave 0.139)."""

    radius: int = Field(5, ge=2)
    beta: float = Field(10.0, gt=0)
    log_t: int = Field(6, ge=0)
    bg_pad: float = Field(0.25, ge=0, le=1)


class IrnRefineParams(Strict):
    """IRN's inter-pixel relations (pipeline/refine/irn.py): ``network`` and ``training`` make the boundary
    network (stage ``train_irn``), ``walk`` only the walk (stage ``refine``)."""

    network: IrnNetworkParams = IrnNetworkParams()
    training: IrnTrainingParams = IrnTrainingParams()
    walk: IrnWalkParams = IrnWalkParams()


class NoRefineParams(Strict):
    """``refine.method: none`` passes the seeds through unchanged; it has no parameters."""


class RefineParams(MethodChoice):
    kind = "refine method"
    method: str = "crf"
    none: NoRefineParams = NoRefineParams()
    crf: CrfRefineParams = CrfRefineParams()
    affinity: AffinityRefineParams = AffinityRefineParams()
    irn: IrnRefineParams = IrnRefineParams()


# --- segmentation network (trained on pseudo labels and, as the bound, on ground truth) ---------------------
class SegmenterParams(Strict):
    """Network and schedule, the same for pseudo labels and full supervision. Paper-scale settings (ResNet-101,
    512 crops, the papers' schedules) are in presets/segmenter_{voc,coco}.yaml; the defaults fit the demo."""

    network: Literal["deeplabv3plus", "deeplabv3"] = "deeplabv3plus"  # smp | torchvision head
    encoder: str = "resnet18"  # smp encoder name (deeplabv3plus) | resnet10 … resnet101 (deeplabv3)
    weights: Literal["none", "imagenet"] = "none"
    output_stride: Literal[8, 16] = 16
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(1e-4, ge=0)
    poly_power: float = Field(0.9, ge=0)  # learning rate × (1 − step / steps)^power
    crop_size: int = Field(64, ge=16)
    scale_range: tuple[float, float] = (0.75, 1.25)
    rescale: Rescale = "auto"  # short_side | none | auto, for training and prediction (pipeline/data/sizes.py)
    min_steps: int = Field(450, ge=0)  # epochs raised to reach this many optimiser steps (the demo's 6 × 75)

    @model_validator(mode="after")
    def _crop_fits_network(self) -> SegmenterParams:
        stride = self.output_stride
        if self.network == "deeplabv3plus" and self.crop_size % stride:
            raise ValueError(
                f"crop_size {self.crop_size} cannot be taken by deeplabv3plus: segmentation-models-pytorch needs "
                f"sides divisible by the output stride {stride} (e.g. {max(stride, self.crop_size // stride * stride)})"
            )
        return self


class PredictParams(Strict):
    """Multi-scale + flip inference on the val split and optional post-processing (FMA-WSSS §4.4)."""

    scales: Scales = (1.0, 0.75, 1.25)
    flip: bool = True
    postprocess: Literal["none", "crf", "sams"] = "none"
    precision: Precision = "fp32"  # the segmenter's forward in fp32, or autocast (bf16 / fp16)
    crf: CrfRefineParams = CrfRefineParams()  # kernels only: the unary is the predicted probabilities
    sams: SamsSeedParams = SamsSeedParams()  # eq. 8–10 with the predicted class probabilities as scores


# --- evaluation ------------------------------------------------------------------------------------------
class SweepParams(Strict):
    start: float = Field(0.05, ge=0, le=1)
    stop: float = Field(0.95, ge=0, le=1)
    step: float = Field(0.05, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> SweepParams:
        if self.start > self.stop:
            raise ValueError(f"start {self.start} must be ≤ stop {self.stop}")
        return self


class EvaluateParams(Strict):
    cam_bg_pad: float = Field(0.15, ge=0, le=1)
    sweep: SweepParams = SweepParams()
    overlay_images: int = Field(8, ge=1)


# --- vocabulary (LLM synonyms and clusters) ----------------------------------------------------------------
class EmbeddingVocabParams(Strict):
    """Offline provider: MiniLM embeddings, agglomerative clusters, WordNet or vocabulary-file synonyms."""

    distance_threshold: float = Field(0.6, gt=0, le=2)
    vocabulary_file: InsidePath = "pipeline/vocab/vocabulary.txt"
    use_wordnet: bool = True


class OpenAIVocabParams(Strict):
    """Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = 0
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    max_invalid: int = Field(2, ge=0)

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """Params are stored (dvc.lock, the DVC cache, Prefect): a secret in the URL would be written everywhere."""
        url = urlsplit(value)
        if url.username is not None or url.password is not None:
            raise ValueError(f"{redact_url(value)}: credentials in the URL would be stored with the params; "
                             f"put the key in the environment variable named by api_key_env")  # fmt: skip
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL with a host: {value}")
        if url.query or url.fragment:
            raise ValueError(f"{redact_url(value)}: no query or fragment (a key there would be stored)")
        return value


class FileVocabParams(Strict):
    synonyms: InsidePath = "vocab/synonyms.json"
    clusters: InsidePath = "vocab/clusters.json"


class VocabParams(Strict):
    provider: Literal["embedding", "openai", "file"] = "embedding"  # each has the section of the same name
    num_synonyms: int = Field(4, ge=1)
    stable_rounds: int = Field(1, ge=1)
    max_rounds: int = Field(5, ge=1)
    cache_dir: InsidePath = ".cache/llm"  # this section's paths are relative to the repository, inside it
    embedding: EmbeddingVocabParams = EmbeddingVocabParams()
    openai: OpenAIVocabParams = OpenAIVocabParams()
    file: FileVocabParams = FileVocabParams()


class MonitoringParams(Strict):
    """What a training stage logs while it runs (pipeline/live.py). Validation figures are logged only: no
    checkpoint is ever picked by them (every stage keeps its last epoch)."""

    validation_images: int = Field(32, ge=0)  # per-epoch val figure on this many val images spread over the split
    images_every: int = Field(2, ge=0)  # the segmenter's val predictions as images every this many epochs (0: none)
    system: bool = True  # samples/s and CPU/RAM/GPU figures in logs/<stage>/ (not a DVC output: no rerun)


class PipelineParams(Strict):
    seed: int = 0
    device: Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)] = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = "fp32"  # training: fp32, or autocast (fp16 with a grad scaler)
    loader_workers: int | None = Field(None, ge=0)  # training DataLoader processes; null: 0 on CPU, cores on CUDA
    data: DataParams = DataParams()
    cam: CamParams = CamParams()
    clip: ClipParams = ClipParams()
    proposals: ProposalParams = ProposalParams()
    seeds: SeedParams = SeedParams()
    refine: RefineParams = RefineParams()
    segmenter: SegmenterParams = SegmenterParams()
    predict: PredictParams = PredictParams()
    evaluate: EvaluateParams = EvaluateParams()
    vocab: VocabParams = VocabParams()
    execution: ExecutionParams = ExecutionParams()
    monitoring: MonitoringParams = MonitoringParams()

    def method_problems(self) -> list[str]:
        """``  key.path: message`` for each invalid CAM method section and cross-section rule (imports every
        CAM method's params module): the stand-in CLIP knows only the synthetic world's words, and must never
        see the benchmark's images."""
        problems = self.cam.method_problems()
        if problems or not type(self.cam.selected()).uses_clip() or self.clip.source != "pretrain_here":
            return problems
        if self.data.source != "synthetic":
            problems.append(f"  clip.source: pretrain_here is the synthetic benchmark's stand-in; with data.source "
                            f"{self.data.source} use clip.source: open_clip")  # fmt: skip
        elif self.clip.pretrain_here.corpus_seed == self.data.synthetic.seed:
            problems.append("  clip.pretrain_here.corpus_seed: equals data.synthetic.seed: the stand-in would be "
                            "pretrained on the benchmark's own images")  # fmt: skip
        return problems


def validate_params(raw: dict, path: Path | str, context: str = "", methods: bool = True) -> PipelineParams:
    """Validate a parsed params mapping; ``methods`` also every CAM method's section. Raise ParamsError naming
    the file and every bad key path."""
    try:
        params = validate_strictly(PipelineParams, raw)
    except ValidationError as error:
        raise ParamsError(format_errors(path, error, context)) from None
    problems = params.method_problems() if methods else []
    if problems:
        raise ParamsError("\n".join([f"{path}{context}: invalid parameters", *problems]))
    return params


def load_params(path: Path | str = "params.yaml", methods: bool = True) -> PipelineParams:
    """Read and validate a params file; raise ParamsError naming every bad key path. Imports no method's code;
    ``methods=False`` leaves the CAM methods' sections to be validated when read (a stage imports only the
    params modules of the methods it runs)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from error
    return validate_params(raw, path, methods=methods)
