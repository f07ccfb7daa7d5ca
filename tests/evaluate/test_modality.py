import numpy as np

from medsim.evaluate.modality import (
    class_prompts,
    grouped_cv,
    label_metrics,
    timed_probe,
    zero_shot_predict,
)


def test_prompts_use_synonyms_and_fall_back_to_the_value():
    prompts = class_prompts("modality", ["CT", "PET"])
    assert "computed tomography image" in prompts["CT"]
    assert all("PET" in p for p in prompts["PET"])


def test_zero_shot_picks_the_closest_class_prompt_mean():
    prompts = [np.array([[1.0, 0], [0.8, 0.2]]), np.array([[0, 1.0]])]
    images = np.array([[2.0, 0.1], [0.1, 3.0], [1, 1.4], [1, 1.1]])
    # [1, 1.1] is nearer the class-0 mean [0.9, 0.1] (cos 0.750) than [0, 1] (cos 0.740)
    assert zero_shot_predict(images, prompts).tolist() == [0, 1, 1, 0]


def test_label_metrics_per_class():
    row = label_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["CT", "MR"])
    assert row["accuracy"] == 0.75
    assert row["per_class_f1"] == {"CT": round(2 / 3, 6), "MR": 0.8}


def test_grouped_cv_keeps_a_case_on_one_side():
    # each case's figures share a feature no other case has; its label is random. A split
    # that let one case's figures train and test would learn it (accuracy near 1).
    rng = np.random.default_rng(0)
    cases = np.repeat(np.arange(40), 3)
    x = np.eye(40)[cases] * 10
    y = rng.integers(0, 2, 40)[cases]
    assert grouped_cv({"probe": x}, y, cases.astype(str), seed=0)["probe"] < 0.75


def test_timed_probe_returns_predictions_and_times():
    x = np.array([[0.0], [0.1], [1.0], [1.1]])
    pred, fit_s, per_item = timed_probe(x, np.array([0, 0, 1, 1]), np.array([[0.05], [1.05]]))
    assert pred.tolist() == [0, 1]
    assert fit_s > 0 and per_item > 0
