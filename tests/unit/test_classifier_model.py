"""The trainable intent classifier: numpy scoring equals scikit-learn's, files reproduce."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from services.router import core, model
from services.router.classify import classify
from services.router.policy import load_taxonomy
from shared.contracts.case_events import ContactReceived
from shared.contracts.inbound import CustomerIdentity

DATA = (Path(__file__).resolve().parents[1] / "fixtures" / "router" / "bitext-8k"
        / "Bitext_Sample_Customer_Service_Training_Dataset.csv")
TAXONOMY = load_taxonomy()


def subset(per_label: int = 60) -> list[model.Example]:
    seen: dict[str, int] = {}
    chosen = []
    for e in model.read_examples(DATA):
        if seen.get(e.label, 0) < per_label:
            seen[e.label] = seen.get(e.label, 0) + 1
            chosen.append(e)
    return chosen


def test_numpy_scoring_matches_scikit_learn() -> None:
    examples = subset()
    train_part, test_part = model.split(examples)
    vectorizer, fitted = model.fit([e.text for e in train_part], [e.label for e in train_part])
    document = model.to_document(vectorizer, fitted, TAXONOMY, 0, {})
    ours = model.StatisticalClassifier(document, TAXONOMY, "model")
    texts = [e.text for e in test_part[:50]]
    theirs = fitted.predict_proba(vectorizer.transform(texts))
    for text, expected in zip(texts, theirs, strict=True):
        assert np.allclose(ours.probabilities(text), expected, atol=2e-3)
        assert ours.predict(text).intent == fitted.classes_[expected.argmax()]


def test_training_is_reproducible_and_the_router_loads_the_file(tmp_path: Path) -> None:
    examples = subset()
    first, report = model.train(examples, TAXONOMY)
    second, _ = model.train(examples, TAXONOMY)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert report.accuracy > 0.8 and report.macro_f1 > 0.8 and report.labels == 27
    path = tmp_path / "intent-model.json"
    model.save(first, path)
    assert path.stat().st_size < 500_000
    config = core.load_config(model_path=path)
    contact = ContactReceived(
        case_id="case-1", contact_id="c-1", channel="email", source_type="x",
        customer=CustomerIdentity(), text="I want to cancel my order please",
        received_at=datetime(2025, 1, 1, tzinfo=UTC))
    classified = classify(contact, config.classifier, config.taxonomy, config.policy, [],
                          contact.received_at)
    assert classified.classifier == "model:intent-model.json"
    assert (classified.intent, classified.skill) == ("cancel_order", "orders")
    assert any("words weighing most" in e for e in classified.evidence)


def test_the_router_starts_without_a_model() -> None:
    assert core.load_config().classifier.name == "rules"
