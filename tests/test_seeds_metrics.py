import numpy as np
import pytest

from pipeline.metrics import confusion_matrix, scores
from pipeline.params import ThresholdSeedParams
from pipeline.seeds.threshold import argmax_with_background, power_background, threshold_seeds

# Two classes (VOC indices 2 and 6 → labels 3 and 7) on a 1×5 strip.
CAMS = np.array([[[0.9, 0.2, 0.04, 0.0, 0.5]], [[0.1, 0.25, 0.01, 0.0, 0.6]]], dtype=np.float32)
CLASSES = [2, 6]


def test_argmax_with_constant_background_ties_go_to_background() -> None:
    labels = argmax_with_background(CAMS, CLASSES, 0.25)
    assert labels.tolist() == [[3, 0, 0, 0, 7]]  # 0.25 vs 0.25 tie → background


def test_constant_threshold_seeds_with_ignore_band() -> None:
    seeds = threshold_seeds(CAMS, CLASSES, ThresholdSeedParams())  # fg 0.30, bg 0.05
    # 0.9 → class, max 0.25 in (0.05, 0.30] → 255, 0.04 ≤ 0.05 → bg, 0 → bg, 0.6 → class 7
    assert seeds.tolist() == [[3, 255, 0, 0, 7]]


def test_power_background_and_seeds() -> None:
    bg = power_background(CAMS, 2.0)
    np.testing.assert_allclose(bg, [[0.01, 0.5625, 0.9216, 1.0, 0.16]], rtol=1e-5)
    params = ThresholdSeedParams(background="power", power={"fg_alpha": 1.0, "bg_alpha": 4.0})
    seeds = threshold_seeds(CAMS, CLASSES, params)
    # fg score (1-m)^1: [0.1, 0.75, 0.96, 1, 0.4]  → fg at pixels 0 and 4 only
    # bg score (1-m)^4: [1e-4, 0.316, 0.849, 1, 0.0256] → bg wins at pixels 1, 2, 3
    assert seeds.tolist() == [[3, 0, 0, 0, 7]]


def test_model_background_is_the_argmax_over_the_methods_own_background_map() -> None:
    background = np.array([[0.5, 0.2, 0.3, 1.0, 0.7]], dtype=np.float32)  # the CAM method's background channel
    seeds = threshold_seeds(CAMS, CLASSES, ThresholdSeedParams(background="model"), background)
    # per pixel: max(0.9, 0.1) > 0.5 → 3; 0.25 > 0.2 → 7; 0.3 > 0.04 → bg; bg; 0.7 > 0.6 → bg. No 255 band.
    assert seeds.tolist() == [[3, 7, 0, 0, 0]]
    with pytest.raises(ValueError, match="seeds.threshold.background: model needs a CAM method with a background"):
        threshold_seeds(CAMS, CLASSES, ThresholdSeedParams(background="model"))


def test_confusion_and_eq4_rates_by_hand() -> None:
    truth = np.array([[0, 0, 1, 1, 1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1, 0, 1]], dtype=np.uint8)
    conf = confusion_matrix(pred, truth, 2)
    assert conf.tolist() == [[1, 1], [1, 2]]
    result = scores(conf)
    # class 1: TP 2, FP 1, FN 1 → IoU 2/4, FPR = FP/(TP+FP) = 1/3, FNR = FN/(TP+FN) = 1/3
    assert result["iou"][1] == pytest.approx(0.5)
    assert result["fpr"][1] == pytest.approx(1 / 3)
    assert result["fnr"][1] == pytest.approx(1 / 3)
    # background: TP 1, FP 1, FN 1 → IoU 1/3
    assert result["miou"] == pytest.approx((1 / 3 + 0.5) / 2)


def test_predicted_ignore_is_skipped_and_absent_classes_do_not_count() -> None:
    truth = np.array([[0, 1, 1]], dtype=np.uint8)
    pred = np.array([[0, 255, 1]], dtype=np.uint8)
    result = scores(confusion_matrix(pred, truth, 3))
    assert np.isnan(result["iou"][2])
    assert result["miou"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="label value"):
        confusion_matrix(np.array([[5]], dtype=np.uint8), np.array([[0]], dtype=np.uint8), 3)


def irn_crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """IRN's misc/imutils.py:crf_inference_label as its code calls it (t=10, gt_prob=0.7), written out here."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    h, w = img.shape[:2]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=0.7, zero_unsure=False))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(img)), compat=10)
    return np.argmax(np.array(d.inference(10)).reshape((n_labels, h, w)), axis=0)


def test_irn_seeds_pass_each_thresholded_argmax_through_irns_label_crf() -> None:
    """A red object on the left half of a blue image whose CAM bleeds 4 columns into the blue: IRN's CRF (its
    step/cam_to_ir_label.py) pulls both argmaxes back to the colour edge, so the seeds are the red half exactly,
    as the reference's own CRF call gives; without the CRF the bleed stays."""
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[:, :20] = (200, 0, 0)
    image[:, 20:] = (0, 0, 200)
    cams = np.zeros((1, 40, 40), dtype=np.float32)
    cams[0, :, :24] = 0.6
    plain = threshold_seeds(cams, [2], ThresholdSeedParams())
    assert (plain[:, :24] == 3).all() and (plain[:, 24:] == 0).all()

    seeds = threshold_seeds(cams, [2], ThresholdSeedParams(crf="irn"), image=image)
    expected = np.zeros((40, 40), dtype=np.uint8)
    expected[:, :20] = 3
    np.testing.assert_array_equal(seeds, expected)

    # the reference's combination of its two CRF'd argmaxes (fg pad 0.30, bg pad 0.05), keys = [0, 3]
    keys = np.array([0, 3])
    fg_conf = keys[
        irn_crf_inference_label(image, np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.30).argmax(0), 2)
    ]
    bg_conf = keys[
        irn_crf_inference_label(image, np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=0.05).argmax(0), 2)
    ]
    conf = fg_conf.copy()
    conf[fg_conf == 0] = 255
    conf[bg_conf + fg_conf == 0] = 0
    np.testing.assert_array_equal(seeds, conf)
    with pytest.raises(ValueError, match="crf: irn needs the image"):
        threshold_seeds(cams, [2], ThresholdSeedParams(crf="irn"))
