"""The trainable intent classifier and the shipped default model: numpy scoring equals
scikit-learn's, files reproduce, labels route to the skills a mapping names, the default model
routes real customer text (English, German, Spanish) and rejects what is out of scope."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from services.router import core, model
from services.router.classify import classify
from services.router.policy import load_policy, load_taxonomy
from shared.contracts.case_events import ContactReceived
from shared.contracts.inbound import CustomerIdentity

DATA = (Path(__file__).resolve().parents[1] / "fixtures" / "router" / "bitext-8k"
        / "Bitext_Sample_Customer_Service_Training_Dataset.csv")
TAXONOMY = load_taxonomy()
POLICY = load_policy()
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def subset(per_label: int = 40) -> list[model.Example]:
    seen: dict[str, int] = {}
    chosen = []
    for e in model.read_examples(DATA):
        if seen.get(e.label, 0) < per_label:
            seen[e.label] = seen.get(e.label, 0) + 1
            chosen.append(e)
    return chosen


def contact(text: str) -> ContactReceived:
    return ContactReceived(case_id="case-1", contact_id="c-1", channel="email", source_type="x",
                           customer=CustomerIdentity(), text=text, received_at=NOW)


def test_character_ngrams_are_scikit_learns_char_wb() -> None:
    analyzer = model._sklearn_char_grams().build_analyzer()
    for text in ["I want a  refund!!", "Rückerstattung bitte", "a b", "reembolsarme ya", ""]:
        assert model.char_grams(text) == analyzer(text.lower())


def test_numpy_scoring_matches_scikit_learn() -> None:
    from scipy.sparse import hstack

    examples = subset()
    train_part, test_part = model.split(examples)
    fitted = model.fit([e.text for e in train_part], [e.label for e in train_part])
    ours = model.StatisticalClassifier(model.to_arrays(fitted, TAXONOMY, 0, {}), TAXONOMY, "m")
    texts = [e.text for e in test_part[:60]]
    theirs = fitted.model.predict_proba(
        hstack([fitted.words.transform(texts), fitted.chars.transform(texts)]).tocsr())
    for text, expected in zip(texts, theirs, strict=True):
        assert np.allclose(ours.probabilities(text), expected, atol=2e-3)
        assert ours.predict(text).intent == fitted.model.classes_[expected.argmax()]


def test_training_is_reproducible_and_the_router_loads_the_file(tmp_path: Path) -> None:
    examples = subset()
    first, report = model.train(examples, TAXONOMY)
    second, _ = model.train(examples, TAXONOMY)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert report.accuracy > 0.8 and report.macro_f1 > 0.8 and report.labels == 27
    path = tmp_path / "intent-model.npz"
    model.save(first, path)
    config = core.load_config(model_path=path)
    classified = classify(contact("I want to cancel my order please"), config.classifier,
                          config.taxonomy, config.policy, [], NOW)
    assert classified.classifier == "model:intent-model.npz"
    assert (classified.intent, classified.skill) == ("cancel_order", "orders")
    assert any("words weighing most" in e for e in classified.evidence)


def test_a_label_to_skill_mapping_routes_a_users_own_labels(tmp_path: Path) -> None:
    rows = ["text,label"] + [f"my card {w} does not work,card_trouble" for w in
                             ("visa", "debit", "credit", "new", "old", "blue", "gold", "metal")]
    rows += [f"I want to invest {n} dollars in stocks,investing" for n in range(8)]
    (tmp_path / "data.csv").write_text("\n".join(rows))
    (tmp_path / "skills.csv").write_text("label,skill\ncard_trouble,cards\ninvesting,wealth\n")
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(main, ["classifier", "train", str(tmp_path / "data.csv"),
                                       "--out", str(out), "--holdout", "0",
                                       "--skills", str(tmp_path / "skills.csv")])
    assert result.exit_code == 0, result.output
    assert "skills: " in result.output and "held-out accuracy" not in result.output
    clf = model.StatisticalClassifier.load(out, TAXONOMY)
    assert clf.skills == {"card_trouble": "cards", "investing": "wealth"}
    guess = clf.predict("my gold card does not work")
    assert (guess.intent, guess.skill) == ("card_trouble", "cards")
    # the same mapping given as a column of the data
    with_column = ["text,label,skill"] + [f"{r},{'cards' if 'card' in r else 'wealth'}"
                                           for r in rows[1:]]
    (tmp_path / "data2.csv").write_text("\n".join(with_column))
    result = CliRunner().invoke(main, ["classifier", "train", str(tmp_path / "data2.csv"),
                                       "--out", str(out), "--holdout", "0",
                                       "--skill-column", "skill"])
    assert result.exit_code == 0, result.output
    assert model.StatisticalClassifier.load(out, TAXONOMY).skills["investing"] == "wealth"


# --- the shipped default model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def default() -> model.StatisticalClassifier:
    return model.StatisticalClassifier.load("default", TAXONOMY)


@pytest.mark.parametrize(("text", "intent", "skill"), [
    ("I was charged twice for the same order", "payment_issue", "billing"),
    ("Where is the tracking number for the card you sent me?", "card_order", "orders"),
    ("Why was I charged a fee for my transfer?", "fees_and_charges", "billing"),
    ("My parcel never arrived", "track_order", "orders"),
    ("The app crashes every time I log in", "app_problem", "technical"),
    ("Someone used my card, I don't recognise these payments", "unrecognised_transaction",
     "accounts"),
    ("Mein Paket ist immer noch nicht angekommen", "track_order", "orders"),
    ("Ich habe mein Passwort vergessen", "recover_password", "technical"),
    ("Ich möchte mein Konto löschen", "delete_account", "accounts"),
    ("Quiero que me devuelvan el dinero", "get_refund", "billing"),
    ("Me han robado la tarjeta", "lost_or_stolen", "accounts"),
    ("Quiero hablar con una persona", "contact_human_agent", "general"),
])
def test_the_default_model_routes_customer_text(default: model.StatisticalClassifier,
                                                text: str, intent: str, skill: str) -> None:
    classified = classify(contact(text), default, TAXONOMY, POLICY, [], NOW)
    assert (classified.intent, classified.skill, classified.needs_triage) == (intent, skill,
                                                                              False)
    assert classified.classifier == "model:default"


def test_the_keyword_rules_mistakes_of_issue_12_are_gone(
        default: model.StatisticalClassifier) -> None:
    # the rules took "in order to" for change_order and any "tracking" for track_order
    transfer = default.predict("I had to pay in order to do a transfer")
    assert transfer.intent in ("fees_and_charges", "transfer_problem")
    assert transfer.skill == "billing"
    card = default.predict("Where is the tracking number for the card you sent me?")
    assert card.intent == "card_order"


@pytest.mark.parametrize("text", ["What's the weather like tomorrow?", "Tell me a joke",
                                  "Set an alarm for 6 am", "¿Cuál es la capital de Australia?"])
def test_the_default_model_sends_out_of_scope_text_to_triage(
        default: model.StatisticalClassifier, text: str) -> None:
    classified = classify(contact(text), default, TAXONOMY, POLICY, [], NOW)
    assert (classified.intent, classified.needs_triage, classified.skill) == (
        "unknown", True, POLICY.triage_skill)
    assert any("out of scope" in e for e in classified.evidence)


def test_every_label_of_the_default_model_is_a_taxonomy_intent(
        default: model.StatisticalClassifier) -> None:
    assert set(default.labels) == {*TAXONOMY.by_name, model.OUT_OF_SCOPE}
    assert all(default.skills[i.name] == i.skill for i in TAXONOMY.intents)
    licences = default.meta["trained_on"]
    assert licences["rows"] > 40_000 and licences["held_out"] == 0


def test_router_model_path_default_names_the_shipped_model() -> None:
    assert core.load_config(model_path=Path("default")).classifier.name == "model:default"


def test_evaluate_prints_the_figures_and_ends_with_the_summary_line(tmp_path: Path) -> None:
    rows = ["text,intent", "I want my money back,get_refund", "where is my parcel,track_order",
            "Ich habe mein Passwort vergessen,recover_password", "tell me a joke,oos",
            "what is the capital of France,oos"]
    (tmp_path / "eval.csv").write_text("\n".join(rows))
    for name in ("default", "rules"):
        result = CliRunner().invoke(main, ["classifier", "evaluate", name,
                                           str(tmp_path / "eval.csv")])
        assert result.exit_code == 0, result.output
        last = result.output.strip().splitlines()[-1].split()
        assert last[0::2] == ["accuracy", "macro_f1", "triage"]
        assert all(0 <= float(v) <= 1 for v in last[1::2])
        assert "worst intents" in result.output and "out of scope" in result.output
    default_out = CliRunner().invoke(main, ["classifier", "evaluate", "default",
                                            str(tmp_path / "eval.csv")]).output
    assert default_out.strip().endswith("accuracy 1.0000 macro_f1 1.0000 triage 0.0000")


def test_evaluate_maps_a_data_sets_labels(tmp_path: Path) -> None:
    (tmp_path / "b77.csv").write_text("text,category\nMy card still hasn't arrived,card_arrival\n"
                                      "I was charged twice,transaction_charged_twice\n")
    (tmp_path / "map.json").write_text(json.dumps({"banking77": {
        "card_arrival": "card_order", "transaction_charged_twice": "payment_issue"}}))
    result = CliRunner().invoke(main, ["classifier", "evaluate", "default",
                                       str(tmp_path / "b77.csv"), "--label-map",
                                       f"{tmp_path / 'map.json'}:banking77"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("accuracy 1.0000")


def test_an_old_model_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.frombuffer(b'{"format": "switchboard-intent-model/1"}', np.uint8))
    with pytest.raises(ValueError, match="retrain"):
        model.StatisticalClassifier.load(path, TAXONOMY)
