"""A figure alone: modality and plane by the modality rows' best caption-free model."""

from __future__ import annotations

import json

import numpy as np

from medsim.classify.figure import FigureLabel, best_model, fit_labeller, load_labellers
from medsim.evaluate.modality import build_modality


def test_best_model_is_the_more_accurate_caption_free_row():
    metrics = {"modality": {"zero_shot": {"accuracy": 0.9}, "linear_probe": {"accuracy": 0.8}}}
    assert best_model(metrics, "modality") == "zero_shot"
    metrics["modality"]["fusion"] = {"accuracy": 1.0}  # needs a caption: never chosen
    assert best_model(metrics, "modality") == "zero_shot"
    metrics["modality"]["linear_probe"]["accuracy"] = 0.9  # a tie: the probe
    assert best_model(metrics, "modality") == "linear_probe"
    assert best_model({}, "plane") == "linear_probe"
    assert best_model({"plane": {"zero_shot": {"accuracy": None}}}, "plane") == "linear_probe"


def test_fit_labeller_needs_two_classes_with_five_training_figures():
    features = np.eye(8, dtype=np.float32)
    values = ["CT"] * 5 + ["MR"] * 3
    label = fit_labeller("modality", "linear_probe", features, values, np.ones(8, bool))
    assert isinstance(label, FigureLabel) and "fewer than 2 modality values" in label.reason


def test_zero_shot_labeller_uses_prompt_prototypes():
    values = ["CT"] * 5 + ["MR"] * 5

    def encode(prompts: list[str]) -> np.ndarray:  # CT prompts -> e1, MR prompts -> e2
        return np.array(
            [[1.0, 0.0] if "CT" in p or "computed" in p else [0.0, 1.0] for p in prompts]
        )

    labeller = fit_labeller(
        "modality", "zero_shot", np.zeros((10, 3)), values, np.ones(10, bool), encode
    )
    assert labeller.model == "zero_shot" and labeller.classes == ["CT", "MR"]
    found = labeller.label(np.zeros((1, 3)), np.array([[0.1, 0.9]]))
    assert (found.value, found.model) == ("MR", "zero_shot")


def test_linear_probe_reproduces_the_modality_row(project):
    ctx = project.ctx
    row = build_modality(ctx)["modality"]["linear_probe"]
    (metrics_dir := project.root / "metrics").mkdir(exist_ok=True)
    (metrics_dir / "modality.json").write_text(json.dumps({"modality": {"linear_probe": row}}))
    labellers = {item.task: item for item in load_labellers(project.root, None)}
    assert set(labellers) == {"modality", "plane"}
    modality = labellers["modality"]
    assert modality.model == "linear_probe" and modality.classes == ["CT", "MR"]
    ids, docs, images = ctx.features["image"]
    split = dict(zip(ctx.articles["doc_id"], ctx.articles["split"], strict=True))
    truth = ctx.figures.set_index("figure_id")["modality"]
    test = [i for i, d in enumerate(docs) if split[d] == "test"]
    hits = [modality.label(images[i : i + 1], None).value == truth[ids[i]] for i in test]
    assert round(float(np.mean(hits)), 6) == row["accuracy"]
