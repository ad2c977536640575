"""Refinement methods: dense CRF presets and unaries, the random walk's affinities, and parallel = serial."""

import numpy as np
import pytest
import scipy.sparse as sparse

from pipeline.dense_crf import CRF_PRESETS
from pipeline.params import AffinityRefineParams, CrfKernelParams, CrfRefineParams
from pipeline.refine.affinity import affinity_matrix, affinity_refine, path_offsets, random_walk
from pipeline.refine.crf import cam_probabilities, crf_refine, kernel_params


def two_tone_image() -> np.ndarray:
    image = np.zeros((12, 16, 3), dtype=np.uint8)
    image[:, :8] = (220, 30, 30)
    image[:, 8:] = (30, 30, 220)
    return image


def test_presets_carry_the_reference_settings() -> None:
    irn, clip_es, toco = CRF_PRESETS["irn"], CRF_PRESETS["clip_es"], CRF_PRESETS["toco"]
    assert (irn.gaussian_sxy, irn.gaussian_compat, irn.bilateral_sxy, irn.bilateral_srgb, irn.bilateral_compat,
            irn.gt_prob, irn.unary) == (3, 3, 50, 5, 10, 0.7, "labels")  # fmt: skip
    assert (clip_es.gaussian_sxy, clip_es.bilateral_sxy, clip_es.bilateral_srgb, clip_es.bilateral_compat,
            clip_es.confidence) == (1, 67, 3, 4, 0.95)  # fmt: skip
    assert (toco.bilateral_sxy, toco.bilateral_srgb, toco.bilateral_compat) == (36, 3, 4)
    assert kernel_params(CrfRefineParams(preset="toco")) is toco
    custom = CrfKernelParams(unary="cams", iterations=3)
    assert kernel_params(CrfRefineParams(preset="custom", custom=custom)) is custom


def test_cam_probabilities_follow_the_power_background() -> None:
    cams = np.array([[[0.5, 0.0]], [[0.25, 0.0]]], dtype=np.float32)
    probs = cam_probabilities(cams, 1.0)
    # Pixel 0: scores [0.5, 0.5, 0.25] → [0.4, 0.4, 0.2]; pixel 1: [1, 0, 0].
    assert probs[:, 0, 0] == pytest.approx([0.4, 0.4, 0.2])
    assert probs[:, 0, 1] == pytest.approx([1.0, 0.0, 0.0])


def test_crf_fills_unsure_pixels_along_colour_edges() -> None:
    image = two_tone_image()
    seeds = np.full((12, 16), 255, dtype=np.uint8)
    seeds[:, :2] = 8  # class 7 seen on the far left
    seeds[:, -2:] = 0  # background on the far right
    params = CrfRefineParams(preset="custom", custom=CrfKernelParams(unary="labels", gaussian_sxy=1, bilateral_sxy=20))
    cams = np.zeros((1, 12, 16), dtype=np.float32)
    refined = crf_refine(image, seeds, cams, [7], params)
    assert (refined[:, :8] == 8).all() and (refined[:, 8:] == 0).all()


def test_crf_confidence_turns_uncertain_pixels_to_ignore() -> None:
    image = two_tone_image()
    cams = np.zeros((1, 12, 16), dtype=np.float32)
    cams[0, :, :8] = 0.55  # barely above the (1 − 0.55) background: an uncertain object
    seeds = np.zeros((12, 16), dtype=np.uint8)
    strict = CrfKernelParams(unary="cams", confidence=0.99, bilateral_sxy=5, bilateral_compat=1, gaussian_compat=1)
    refined = crf_refine(image, seeds, cams, [2], CrfRefineParams(preset="custom", custom=strict))
    assert (refined[:, :8] == 255).all() and (refined[:, 8:] == 0).all()


def test_affinity_is_one_minus_the_worst_boundary_on_the_path() -> None:
    boundary = np.zeros((1, 5))
    boundary[0, 2] = 0.5
    affinity = affinity_matrix(boundary, radius=3, beta=1.0).toarray()
    assert affinity[0, 1] == 1.0 and affinity[0, 0] == 1.0
    assert affinity[1, 3] == pytest.approx(0.5) and affinity[0, 2] == pytest.approx(0.5)
    assert affinity[0, 3] == 0.0  # distance 3 is outside radius 3
    assert affinity_matrix(boundary, radius=3, beta=2.0).toarray()[1, 3] == pytest.approx(0.25)
    assert (2, 2) in path_offsets(3) and (3, 0) not in path_offsets(3) and (0, 0) not in path_offsets(3)


def test_random_walk_does_not_cross_a_full_boundary() -> None:
    boundary = np.zeros((1, 6))
    boundary[0, 3] = 1.0
    affinity = affinity_matrix(boundary, radius=2, beta=10.0)
    values = np.array([[1.0, 0, 0, 0, 0, 0]])
    walked = random_walk(values, affinity, log_t=4)
    assert walked[0, 4:].sum() == 0.0 and walked[0, :3].min() > 0
    column_sums = (affinity @ sparse.diags(1.0 / np.asarray(affinity.sum(axis=0)).ravel())).sum(axis=0)
    assert np.allclose(column_sums, 1.0)


def test_affinity_refine_labels_the_object_side() -> None:
    image = two_tone_image()
    cams = np.zeros((1, 12, 16), dtype=np.float32)
    cams[0, 4:8, 2:6] = 1.0  # a CAM peak inside the left (red) half
    labels = affinity_refine(image, np.zeros((12, 16), np.uint8), cams, [3], AffinityRefineParams(stride=2, radius=3))
    assert labels[6, 4] == 4 and (labels[:, 10:] == 0).all()


def test_custom_kernels_and_walk_stride_scale_with_the_image() -> None:
    from pipeline.dense_crf import spatial_scale
    from pipeline.refine.affinity import walk_stride

    custom = CrfRefineParams().custom
    assert spatial_scale(custom, 64, 64) == 1.0  # the demo: as written
    assert spatial_scale(custom, 375, 500) == pytest.approx((375 * 500) ** 0.5 / 64)  # 6.77: sxy 6 → 40.6
    assert spatial_scale(CRF_PRESETS["irn"], 375, 500) == 1.0  # the presets are pixels of ~500 px images
    walk = AffinityRefineParams()
    assert walk_stride(walk, 64, 64) == 1 and walk_stride(walk, 375, 500) == 7
    assert walk_stride(AffinityRefineParams(stride=4, reference_size=None), 375, 500) == 4


def test_affinity_on_a_voc_sized_image_keeps_its_size() -> None:
    image = np.full((375, 500, 3), 128, dtype=np.uint8)
    cams = np.zeros((1, 375, 500), dtype=np.float32)
    cams[0, 100:250, 150:350] = 1.0
    label = affinity_refine(image, np.zeros((375, 500), np.uint8), cams, [4], AffinityRefineParams())
    assert label.shape == (375, 500) and set(np.unique(label).tolist()) <= {0, 5}
    assert (label[150:200, 160:240] == 5).all()
