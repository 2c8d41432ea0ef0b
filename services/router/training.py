"""The default model's training data, from openly licensed sets kept in the repository
(`data/intents/`, each with its licence), mapped onto the default taxonomy's intents:

- Bitext customer-support samples, 20k and 8k utterances, 27 intents (CDLA-Sharing-1.0): its
  intents are the taxonomy's e-commerce intents;
- BANKING77 `train.csv`, 10,003 real-style banking queries (CC-BY-4.0): 77 labels mapped by
  `label-maps.json`;
- CLINC150 `train` + `oos_train` (CC-BY-3.0): 11 customer-service intents mapped; 6 assistant
  domains and `oos_train` as the reject class `out_of_scope`;
- `switchboard-examples.csv`, written for this project (Apache-2.0): German and Spanish for every
  intent (10 each), English ones for gaps (app problems, "parcel"), reject examples.

`switchboard classifier build-default` fits the model on all of it and writes the file shipped in
the package; `cross_validate` measures the same recipe on folds of the same data.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.router.model import OUT_OF_SCOPE, Example, read_examples
from shared.settings import REPO_ROOT

DATA_DIR = REPO_ROOT / "data" / "intents"
PACKAGED_MODEL = Path(__file__).resolve().parent / "models" / "default-intent-model.npz"
OOS_PER_INTENT = 40  # of CLINC's out-of-scope domains' 100 training queries per intent


@dataclass(frozen=True)
class Sourced:
    example: Example
    source: str  # bitext | banking77 | clinc150 | clinc150-oos | switchboard-de | …


def _maps(data_dir: Path) -> dict[str, dict[str, object]]:
    maps: dict[str, dict[str, object]] = json.loads(
        (data_dir / "label-maps.json").read_text("utf-8"))
    return maps


_BITEXT_NAMES = {"check_invoice": "check_invoices"}  # the 8k sample's name for the 20k's intent


def bitext(data_dir: Path = DATA_DIR) -> list[Sourced]:
    """Bitext's two samples (20k and 8k utterances; they share under 200)."""
    out: list[Sourced] = []
    for folder, name in (("bitext-20k", "TrainingdatasetBitextsample.csv"),
                         ("bitext-8k", "Bitext_Sample_Customer_Service_Training_Dataset.csv")):
        seen = {s.example.text for s in out}
        out += [Sourced(Example(e.text, _BITEXT_NAMES.get(e.label, e.label)), "bitext")
                for e in read_examples(data_dir / folder / name, "utterance", "intent")
                if e.text not in seen]
    return out


def banking77(data_dir: Path = DATA_DIR) -> list[Sourced]:
    mapping = _maps(data_dir)["banking77"]
    out = []
    for e in read_examples(data_dir / "banking77" / "train.csv", "text", "category"):
        intent = mapping.get(e.label)
        if isinstance(intent, str):
            out.append(Sourced(Example(e.text, intent), "banking77"))
    return out


def clinc150(data_dir: Path = DATA_DIR, split: str = "train", seed: int = 0) -> list[Sourced]:
    """CLINC150's mapped customer-service intents, and its assistant domains + `oos_<split>` as
    out of scope (`OOS_PER_INTENT` queries per out-of-scope intent, seeded)."""
    mapping = _maps(data_dir)["clinc150"]
    data = json.loads((data_dir / "clinc150" / "train_val.json").read_text("utf-8"))
    domains = json.loads((data_dir / "clinc150" / "domains.json").read_text("utf-8"))
    oos_domains = mapping["_domains_out_of_scope"]
    assert isinstance(oos_domains, list)
    oos_intents = {i for d in oos_domains for i in domains[d]} - set(mapping)
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in data[split]:
        by_label[label].append(text)
    rng = random.Random(seed)
    out = []
    for label in sorted(by_label):
        texts = by_label[label]
        intent = mapping.get(label)
        if isinstance(intent, str) and not label.startswith("_"):
            out += [Sourced(Example(t, intent), "clinc150") for t in texts]
        elif label in oos_intents:
            chosen = rng.sample(texts, min(OOS_PER_INTENT, len(texts)))
            out += [Sourced(Example(t, OUT_OF_SCOPE), "clinc150-oos") for t in chosen]
    out += [Sourced(Example(t, OUT_OF_SCOPE), "clinc150-oos") for t, _ in data[f"oos_{split}"]]
    return out


def own(data_dir: Path = DATA_DIR) -> list[Sourced]:
    with (data_dir / "switchboard-examples.csv").open(newline="", encoding="utf-8") as f:
        return [Sourced(Example(r["text"], r["intent"]), f"switchboard-{r['language']}")
                for r in csv.DictReader(f)]


def default_data(data_dir: Path = DATA_DIR, seed: int = 0) -> list[Sourced]:
    return [*bitext(data_dir), *banking77(data_dir), *clinc150(data_dir, "train", seed),
            *own(data_dir)]


_GREETINGS = {
    "de": (("Hallo, {}", "{} Danke.", "Guten Tag, {} Viele Grüße", "{}!!")),
    "es": (("Hola, {}", "{} Gracias.", "Buenos días, {} Un saludo", "{}!!")),
    "en": (("Hi, {}", "{} Thanks.", "Hello, {} Regards", "{}!!")),
}


def augment(data: list[Sourced]) -> list[Example]:
    """The examples to fit on: our own few German and Spanish examples each also with a greeting,
    a sign-off, lower case without punctuation (as typed on a phone) and shouted, so that a few
    hundred of them weigh against tens of thousands of English ones."""
    out = []
    for s in data:
        out.append(s.example)
        language = s.source.removeprefix("switchboard-")
        if not s.source.startswith("switchboard-"):
            continue
        text, label = s.example.text, s.example.label
        out += [Example(form.format(text), label) for form in _GREETINGS[language]]
        out.append(Example("".join(c for c in text.lower() if c.isalnum() or c.isspace()),
                           label))
    return out


def build_default(out: Path = PACKAGED_MODEL, data_dir: Path = DATA_DIR,
                  seed: int = 0) -> dict[str, object]:
    """Fit the default model on all the default data; write it; return its metadata."""
    from services.router import model
    from services.router.policy import load_taxonomy

    arrays, _report = model.train(augment(default_data(data_dir, seed)), load_taxonomy(), seed,
                                  test_size=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(arrays, out)
    meta: dict[str, object] = json.loads(arrays["meta"].tobytes())
    return meta


# --- measuring the recipe ---------------------------------------------------------------------
def baseline_fit(texts: list[str], labels: list[str], seed: int = 0) -> Any:
    """The classifier this one replaces: TF-IDF over words and word pairs (4,000 features) and
    logistic regression (C=10), as `classifier train` fitted before; a scikit-learn pipeline."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=4000, sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=3000, random_state=seed))
    pipeline.fit(texts, labels)
    return pipeline


class BaselineClassifier:
    """A fitted baseline pipeline behind the router's classifier interface."""

    name = "baseline"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.labels = [str(c) for c in pipeline.classes_]

    def predict(self, text: str) -> Any:
        from services.router.classify import IntentGuess

        probs = self.pipeline.predict_proba([text])[0]
        best = int(probs.argmax())
        label = self.labels[best]
        if label == OUT_OF_SCOPE:
            return IntentGuess("unknown", "general", 0.0, (), self.name)
        return IntentGuess(label, "general", round(float(probs[best]), 3), (), self.name)


def fit_recipe(train: list[Example], calibration: list[Example], seed: int = 0) -> Any:
    """This module's recipe on `train`, its temperature from `calibration`: the classifier."""
    from services.router import model
    from services.router.policy import load_taxonomy

    fitted = model.fit([e.text for e in train], [e.label for e in train], seed)
    fitted.temperature = model.calibrate(fitted, [e.text for e in calibration],
                                         [e.label for e in calibration])
    taxonomy = load_taxonomy()
    return model.StatisticalClassifier(model.to_arrays(fitted, taxonomy, seed, {}), taxonomy,
                                       "model")


def folds(data: list[Sourced], k: int = 3, seed: int = 0
          ) -> list[tuple[list[Sourced], list[Sourced], list[Sourced]]]:
    """Stratified k folds: (train, calibration half, evaluation half) of each."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    labels = [f"{s.example.label}|{s.source.startswith('switchboard')}" for s in data]
    out = []
    for train_idx, test_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(
            data, labels):
        test = [data[i] for i in test_idx]
        try:
            calib, held = train_test_split(test, test_size=0.5, random_state=seed,
                                           stratify=[labels[i] for i in test_idx])
        except ValueError:  # a class with a single row in this fold
            calib, held = train_test_split(test, test_size=0.5, random_state=seed)
        out.append(([data[i] for i in train_idx], list(calib), list(held)))
    return out
