"""SAM proposals: segment-anything's automatic mask generator, keeping each mask's level (FMA-WSSS §3.3).

SAM answers every point prompt with three masks — sub-part, part, whole — and the stock generator forgets
which is which. :class:`LevelledMaskGenerator` keeps the level and adds FMA-WSSS's two changes to the pipeline:

- *more whole*: whole masks get ``more_whole`` (0.1) added to their predicted IoU before the ``pred_iou_thresh``
  test, i.e. a lower threshold t_{m,whole} for the whole level;
- *NMS priority*: whole masks get ``nms_priority`` (1.0) added to their score in the per-crop box NMS, so parts
  and sub-parts lying on them do not suppress them.

The stored score is SAM's own predicted IoU. Small holes and islands (``min_mask_region_area``) are removed
with scikit-image instead of OpenCV (same rule: components smaller than the area go), followed by SAM's
box NMS that prefers unchanged masks. Built on segment-anything 1.0's generator internals (pinned).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from skimage.morphology import remove_small_holes, remove_small_objects
from torchvision.ops.boxes import batched_nms

from pipeline.device import autocast
from pipeline.io import one_line
from pipeline.params import SamProposalParams
from pipeline.proposals import PROPOSAL_METHODS
from pipeline.proposals.regions import WHOLE, Proposals

CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


def threshold_scores(iou_preds: torch.Tensor, level: torch.Tensor, more_whole: float) -> torch.Tensor:
    """Predicted IoU as compared with ``pred_iou_thresh``: whole masks get ``more_whole`` added."""
    return iou_preds + more_whole * (level == WHOLE).to(iou_preds.dtype)


def nms_scores(iou_preds: torch.Tensor, level: torch.Tensor, nms_priority: float) -> torch.Tensor:
    """Scores for the per-crop box NMS: whole masks get ``nms_priority`` added."""
    return iou_preds + nms_priority * (level == WHOLE).to(iou_preds.dtype)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and drop islands smaller than ``min_area`` pixels; also report whether anything changed."""
    cleaned = remove_small_objects(remove_small_holes(mask, max_size=min_area - 1), max_size=min_area - 1)
    return cleaned, bool((cleaned != mask).any())


class LevelledMaskGenerator(SamAutomaticMaskGenerator):
    """SamAutomaticMaskGenerator that records each mask's level and applies *more whole* and *NMS priority*."""

    def __init__(self, model: Sam, more_whole: float, nms_priority: float, min_mask_region_area: int,
                 precision: str = "fp32", **kwargs) -> None:  # fmt: skip
        super().__init__(model, min_mask_region_area=0, **kwargs)
        self.more_whole = more_whole
        self.nms_priority = nms_priority
        self.min_area = min_mask_region_area
        self.precision = precision  # the encoder's and the decoder's forward; the masks' arithmetic stays fp32

    def autocast(self) -> torch.autocast:
        return autocast(self.predictor.device, self.precision)

    def _process_batch(self, points, im_size, crop_box, orig_size) -> MaskData:
        orig_h, orig_w = orig_size
        transformed = self.predictor.transform.apply_coords(points, im_size)
        in_points = torch.as_tensor(transformed, device=self.predictor.device)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        with self.autocast():
            masks, iou_preds, _ = self.predictor.predict_torch(
                in_points[:, None, :], in_labels[:, None], multimask_output=True, return_logits=True
            )
        masks, iou_preds = masks.float(), iou_preds.float()
        levels = torch.arange(masks.shape[1], device=masks.device).repeat(masks.shape[0])
        data = MaskData(
            masks=masks.flatten(0, 1), iou_preds=iou_preds.flatten(0, 1), level=levels,
            points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
        )  # fmt: skip
        del masks
        if self.pred_iou_thresh > 0.0:
            data.filter(threshold_scores(data["iou_preds"], data["level"], self.more_whole) > self.pred_iou_thresh)
        data["stability_score"] = calculate_stability_score(
            data["masks"], self.predictor.model.mask_threshold, self.stability_score_offset
        )
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > self.predictor.model.mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
        data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = mask_to_rle_pytorch(data["masks"])
        del data["masks"]
        return data

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        with self.autocast():
            self.predictor.set_image(cropped)
        points_for_image = self.point_grids[crop_layer_idx] * np.array(cropped.shape[:2])[None, ::-1]
        data = MaskData()
        for start in range(0, len(points_for_image), self.points_per_batch):
            data.cat(self._process_batch(points_for_image[start : start + self.points_per_batch],
                                         cropped.shape[:2], crop_box, orig_size))  # fmt: skip
        self.predictor.reset_image()
        if len(data["rles"]):
            keep = batched_nms(
                data["boxes"].float(), nms_scores(data["iou_preds"], data["level"], self.nms_priority),
                torch.zeros(len(data["boxes"]), device=data["boxes"].device), iou_threshold=self.box_nms_thresh,
            )  # fmt: skip
            data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        # (n, 4) even when no mask survives: segment-anything's cross-crop NMS takes the boxes' areas, and an empty
        # (0,) tensor made an image without masks in any crop fail there (IndexError)
        data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))]).reshape(-1, 4)
        return data

    def _clean_small_regions(self, masks: np.ndarray, data: MaskData) -> np.ndarray:
        """SAM's post-processing: clean each mask, then box NMS preferring masks that did not change."""
        cleaned, unchanged = [], []
        for mask in masks:
            mask, changed = remove_small_regions(mask, self.min_area)
            cleaned.append(mask)
            unchanged.append(float(not changed))
        cleaned = np.stack(cleaned)
        boxes = batched_mask_to_box(torch.as_tensor(cleaned))
        keep = batched_nms(boxes.float(), torch.as_tensor(unchanged), torch.zeros(len(boxes)),
                           iou_threshold=max(self.box_nms_thresh, self.crop_nms_thresh)).numpy()  # fmt: skip
        keep.sort()
        data.filter(torch.as_tensor(keep))
        return cleaned[keep]

    @torch.no_grad()
    def generate_levelled(self, image: np.ndarray) -> Proposals:
        """Masks of an H×W×3 uint8 image with level, predicted IoU and stability."""
        data = self._generate_masks(image)
        if len(data["rles"]):
            masks = np.stack([rle_to_mask(rle) for rle in data["rles"]]).astype(bool)
        else:
            masks = np.zeros((0, *image.shape[:2]), dtype=bool)
        if self.min_area > 0 and len(masks):
            masks = self._clean_small_regions(masks, data)
        return Proposals.from_masks(
            masks, np.asarray(data["level"], dtype=np.uint8),
            np.asarray(data["iou_preds"], dtype=np.float32), np.asarray(data["stability_score"], dtype=np.float32),
        )  # fmt: skip


SAM_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # the image encoder's width: the model type


def sam_model_type(state: dict[str, torch.Tensor]) -> str | None:
    """The SAM model type a state dict holds (from its image encoder's width), or None when it is not SAM's."""
    pos_embed = state.get("image_encoder.pos_embed")
    return SAM_WIDTHS.get(int(pos_embed.shape[-1])) if isinstance(pos_embed, torch.Tensor) else None


def load_sam(model_type: str, checkpoint: Path, device: torch.device) -> Sam:
    """A SAM model from a local checkpoint (never downloaded, e.g. ``sam_vit_h_4b8939.pth``), read with
    ``weights_only``: segment-anything's own loader calls ``torch.load`` without it, so a crafted file would run
    code. ``model_type`` ``auto`` takes the type the file holds; a named type is checked against it. A missing
    file, one that holds anything but tensors, or one of another type fails naming the file."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        url = CHECKPOINT_URLS.get(model_type, CHECKPOINT_URLS["vit_h"])
        raise FileNotFoundError(
            f"{checkpoint}: SAM checkpoint for {model_type} not found. Nothing is downloaded at run time: fetch "
            f"{url} on a connected machine, put it at this path (or set proposals.sam.checkpoint), or use "
            f"proposals.method: superpixels"
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as error:
        detail = one_line(error)
        raise ValueError(f"{checkpoint}: not a SAM state dict loadable without running code ({detail})") from None
    found = sam_model_type(state) if isinstance(state, dict) else None
    if found is None:
        raise ValueError(f"{checkpoint}: not a SAM state dict (no image_encoder.pos_embed of a known width)")
    if model_type not in ("auto", found):
        raise ValueError(f"{checkpoint}: holds SAM {found} weights but proposals.sam.model_type is {model_type}; "
                         f"set it to {found} (or auto)")  # fmt: skip
    model = sam_model_registry[found]()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: does not fit SAM {found} ({len(missing)} weights missing, e.g. "
                         f"{missing[:1]}, {len(unexpected)} unexpected, e.g. {unexpected[:1]})")  # fmt: skip
    return model.to(device).eval()


@PROPOSAL_METHODS.register("sam")
class SamProposals:
    """SAM automatic masks with FMA-WSSS's settings; one model per process (GPU when available)."""

    def __init__(self, params: SamProposalParams, device: torch.device, model: Sam | None = None) -> None:
        model = model if model is not None else load_sam(params.model_type, Path(params.checkpoint), device)
        self.generator = LevelledMaskGenerator(
            model, more_whole=params.more_whole, nms_priority=params.nms_priority,
            min_mask_region_area=params.min_mask_region_area, points_per_side=params.points_per_side,
            points_per_batch=params.points_per_batch, pred_iou_thresh=params.pred_iou_thresh,
            stability_score_thresh=params.stability_score_thresh, box_nms_thresh=params.box_nms_thresh,
            crop_n_layers=params.crop_n_layers, crop_nms_thresh=params.crop_nms_thresh,
            crop_overlap_ratio=params.crop_overlap_ratio,
            crop_n_points_downscale_factor=params.crop_n_points_downscale_factor, precision=params.precision,
        )  # fmt: skip

    def __call__(self, image: np.ndarray) -> Proposals:
        return self.generator.generate_levelled(image)
