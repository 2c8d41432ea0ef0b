"""The trainable intent classifier: TF-IDF words and word pairs + multinomial logistic regression.

`train` needs scikit-learn; the router only *loads* the model file, a small JSON document
(vocabulary, idf, weights), and scores with numpy, so inference matches scikit-learn exactly
without unpickling anything. Training is deterministic: fixed seed, sorted vocabulary.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from services.router.classify import IntentClassifier as IntentClassifierLike
from services.router.classify import IntentGuess
from services.router.policy import Taxonomy

FORMAT = "switchboard-intent-model/1"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def read_examples(path: Path, text_column: str | None = None,
                  label_column: str | None = None) -> list[Example]:
    """Labelled examples from a CSV with a header. Columns default to the first of
    text/utterance and intent/label/category present."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        text_col = text_column or next((c for c in ("text", "utterance") if c in fields), None)
        label_col = label_column or next(
            (c for c in ("intent", "label", "category") if c in fields), None)
        if text_col is None or label_col is None:
            raise ValueError(f"{path}: need a text and a label column, found {fields}")
        return [Example(row[text_col].strip(), row[label_col].strip()) for row in reader
                if row.get(text_col, "").strip() and row.get(label_col, "").strip()]


@dataclass(frozen=True)
class Report:
    accuracy: float
    macro_f1: float
    train_rows: int
    test_rows: int
    labels: int


def fit(texts: list[str], labels: list[str], seed: int = 0,
        max_features: int = 4000) -> tuple[Any, Any]:
    """The scikit-learn vectorizer and model, fitted."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=max_features,
                                 sublinear_tf=True)
    model = LogisticRegression(C=10.0, max_iter=3000, random_state=seed)
    model.fit(vectorizer.fit_transform(texts), labels)
    return vectorizer, model


def to_document(vectorizer: Any, model: Any, taxonomy: Taxonomy, seed: int,
                trained_on: dict[str, Any]) -> dict[str, Any]:
    """The fitted model as the JSON document the router loads."""
    vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
    return {
        "format": FORMAT, "seed": seed, "ngram_range": [1, 2], "sublinear_tf": True,
        "labels": [str(c) for c in model.classes_],
        "skills": {str(c): _skill(str(c), taxonomy) for c in model.classes_},
        "vocabulary": vocabulary,
        "idf": [round(float(v), 5) for v in vectorizer.idf_],
        "coef": [[round(float(v), 4) for v in row] for row in model.coef_],
        "intercept": [round(float(v), 4) for v in model.intercept_],
        "trained_on": trained_on,
    }


def split(examples: list[Example], seed: int = 0, test_size: float = 0.2
          ) -> tuple[list[Example], list[Example]]:
    """A stratified, seeded train/held-out split."""
    from sklearn.model_selection import train_test_split

    train_part, test_part = train_test_split(examples, test_size=test_size, random_state=seed,
                                             stratify=[e.label for e in examples])
    return list(train_part), list(test_part)


def evaluate(classifier: IntentClassifierLike, examples: list[Example]) -> tuple[float, float]:
    """(accuracy, macro-F1) of any intent classifier on labelled examples."""
    from sklearn.metrics import accuracy_score, f1_score

    truth = [e.label for e in examples]
    predicted = [classifier.predict(e.text).intent for e in examples]
    return (round(float(accuracy_score(truth, predicted)), 4),
            round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4))


def train(examples: list[Example], taxonomy: Taxonomy, seed: int = 0, test_size: float = 0.2,
          max_features: int = 4000) -> tuple[dict[str, Any], Report]:
    """Fit on a stratified split; report accuracy and macro-F1 of the saved model (as the router
    will score it) on the held-out part."""
    train_part, test_part = split(examples, seed, test_size)
    vectorizer, model = fit([e.text for e in train_part], [e.label for e in train_part], seed,
                            max_features)
    digest = hashlib.sha256("\n".join(f"{e.text}\t{e.label}" for e in examples).encode())
    document = to_document(vectorizer, model, taxonomy, seed,
                           {"rows": len(examples), "sha256": digest.hexdigest()})
    accuracy, macro_f1 = evaluate(StatisticalClassifier(document, taxonomy, "model"), test_part)
    document["trained_on"].update(accuracy=accuracy, macro_f1=macro_f1)
    return document, Report(accuracy, macro_f1, len(train_part), len(test_part),
                            len(model.classes_))


def _skill(label: str, taxonomy: Taxonomy) -> str:
    intent = taxonomy.by_name.get(label)
    return intent.skill if intent else taxonomy.fallback_skill


def save(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n", "utf-8")


class StatisticalClassifier:
    """Scores a text with a trained model file; evidence names the words that weighed most."""

    def __init__(self, document: dict[str, Any], taxonomy: Taxonomy, name: str) -> None:
        if document.get("format") != FORMAT:
            raise ValueError(f"format: expected {FORMAT!r}, got {document.get('format')!r}")
        self.name = name
        self.labels: list[str] = document["labels"]
        self.skills: dict[str, str] = {
            label: (_skill(label, taxonomy) if label in taxonomy.by_name
                    else document["skills"].get(label, taxonomy.fallback_skill))
            for label in self.labels}
        self.index = {term: i for i, term in enumerate(document["vocabulary"])}
        self.terms: list[str] = document["vocabulary"]
        self.idf = np.asarray(document["idf"], dtype=np.float64)
        self.coef = np.asarray(document["coef"], dtype=np.float64)
        self.intercept = np.asarray(document["intercept"], dtype=np.float64)

    @classmethod
    def load(cls, path: Path, taxonomy: Taxonomy) -> StatisticalClassifier:
        return cls(json.loads(path.read_text("utf-8")), taxonomy, f"model:{path.name}")

    def vector(self, text: str) -> np.ndarray:
        tokens = _TOKEN.findall(text.lower())
        grams = tokens + [f"{a} {b}" for a, b in pairwise(tokens)]
        counts = Counter(g for g in grams if g in self.index)
        x = np.zeros(len(self.terms))
        for gram, n in counts.items():
            x[self.index[gram]] = (1.0 + math.log(n)) * self.idf[self.index[gram]]
        norm = np.linalg.norm(x)
        return x / norm if norm else x

    def probabilities(self, text: str) -> np.ndarray:
        logits = self.coef @ self.vector(text) + self.intercept
        if len(self.labels) == 2:  # binary logistic regression keeps one row of weights
            p = 1.0 / (1.0 + math.exp(-float(logits[0])))
            return np.asarray([1.0 - p, p])
        exp = np.exp(logits - logits.max())
        result: np.ndarray = exp / exp.sum()
        return result

    def predict(self, text: str) -> IntentGuess:
        x = self.vector(text)
        probs = self.probabilities(text)
        best = int(probs.argmax())
        label = self.labels[best]
        evidence = [f"intent: {self.name} → {label} (p={probs[best]:.2f})"]
        if len(self.labels) > 2 and x.any():
            weights = self.coef[best] * x
            top = [i for i in np.argsort(-weights)[:3] if weights[i] > 0]
            if top:
                words = ", ".join(repr(self.terms[i]) for i in top)
                evidence.append(f"intent: words weighing most: {words}")
        return IntentGuess(label, self.skills[label], round(float(probs[best]), 3),
                           tuple(evidence), self.name)
