"""The trainable intent classifier: TF-IDF over words (1–2-grams) and characters (2–5-grams
within words) + multinomial logistic regression, with a temperature that calibrates its
probabilities and an optional reject class (`out_of_scope`) that sends a contact to triage.

Character n-grams carry what words miss in short customer text: typos ("regisger"), inflected
German and Spanish forms ("Rückerstattung", "reembolsarme"), run-on words. Training needs
scikit-learn; the router only *loads* the model file (`.npz`, numpy arrays, no pickle) and scores
with numpy, matching scikit-learn (a unit test checks). Training is deterministic: fixed seed,
sorted vocabularies.

`default` names the model shipped in the package (`models/default-intent-model.npz`), built by
`switchboard classifier build-default` from openly licensed data (see `services.router.training`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from services.router.classify import IntentClassifier as IntentClassifierLike
from services.router.classify import IntentGuess
from services.router.policy import Taxonomy

FORMAT = "switchboard-intent-model/2"
OUT_OF_SCOPE = "out_of_scope"
DEFAULT_MODEL = "default"
MAX_CHARS = 2000  # training reads the start of each example
# Scoring reads the start of a contact (subject and first lines): what it is about, at a cost
# that does not grow with a long history or a pasted log.
SCORE_CHARS = 500
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
_SPACES = re.compile(r"\s\s+")  # scikit-learn's char_wb white-space normalisation
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    skill: str | None = None  # from a skill column, if the data has one


def read_examples(path: Path, text_column: str | None = None, label_column: str | None = None,
                  skill_column: str | None = None) -> list[Example]:
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
        if skill_column and skill_column not in fields:
            raise ValueError(f"{path}: no column {skill_column!r}, found {fields}")
        return [Example(row[text_col].strip(), row[label_col].strip(),
                        (row.get(skill_column) or "").strip() or None if skill_column else None)
                for row in reader
                if (row.get(text_col) or "").strip() and (row.get(label_col) or "").strip()]


def read_skill_map(path: Path) -> dict[str, str]:
    """A label → skill mapping: a JSON object, or a CSV with columns label (or intent) and
    skill."""
    text = path.read_text("utf-8-sig")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"{path}: expected a JSON object of label → skill")
        return {str(k): v for k, v in data.items()}
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return {}
    label = next((c for c in ("label", "intent", "category") if c in rows[0]), None)
    if label is None or "skill" not in rows[0]:
        raise ValueError(f"{path}: need columns label (or intent) and skill")
    return {r[label].strip(): r["skill"].strip() for r in rows if r[label] and r["skill"]}


# --- features (the same arithmetic as scikit-learn's TfidfVectorizer) ---------------------------
def word_grams(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def char_grams(text: str) -> list[str]:
    """scikit-learn's `char_wb` analyzer: n-grams inside words padded with a space."""
    lo, hi = CHAR_NGRAMS
    grams = []
    for word in _SPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        size = len(padded)
        for n in range(lo, hi + 1):
            if n >= size:  # scikit-learn keeps a word no longer than n whole, once
                grams.append(padded)
                break
            grams.extend(padded[i : i + n] for i in range(size - n + 1))
    return grams


def _sklearn_char_grams() -> Any:
    """The vectorizer whose features `char_grams` reproduces (used by training and tests)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, min_df=2,
                           sublinear_tf=True, max_features=60_000, dtype=np.float32)


def _sklearn_word_grams() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=WORD_NGRAMS, min_df=2, sublinear_tf=True,
                           max_features=40_000, dtype=np.float32)


@dataclass(frozen=True)
class Report:
    accuracy: float
    macro_f1: float
    train_rows: int
    test_rows: int
    labels: int
    triage: float = 0.0


@dataclass
class Fitted:
    """What training produced, before it becomes the file."""

    words: Any
    chars: Any
    model: Any
    temperature: float = 1.0
    skills: dict[str, str] = field(default_factory=dict)


def fit(texts: list[str], labels: list[str], seed: int = 0, c: float = 10.0) -> Fitted:
    """Fit the vectorizers and the logistic regression."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    texts = [t[:MAX_CHARS] for t in texts]
    words, chars = _sklearn_word_grams(), _sklearn_char_grams()
    x = hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(x, labels)
    return Fitted(words, chars, model)


def calibrate(fitted: Fitted, texts: list[str], labels: list[str]) -> float:
    """The temperature that makes the probabilities honest on held-out texts (least negative
    log-likelihood over a grid): logistic regression with weak regularisation is overconfident."""
    scorer = _scorer(fitted)
    logits = np.stack([scorer.logits(t) for t in texts])
    index = {c: i for i, c in enumerate(scorer.labels)}
    known = [(i, index[y]) for i, y in enumerate(labels) if y in index]
    rows, cols = np.asarray([k[0] for k in known]), np.asarray([k[1] for k in known])
    best, best_loss = 1.0, math.inf
    for t in np.arange(0.5, 3.01, 0.05):
        z = logits[rows] / t
        z = z - z.max(axis=1, keepdims=True)
        loss = float(-(z[np.arange(len(rows)), cols] - np.log(np.exp(z).sum(axis=1))).mean())
        if loss < best_loss:
            best, best_loss = float(round(t, 2)), loss
    return best


def to_arrays(fitted: Fitted, taxonomy: Taxonomy, seed: int,
              trained_on: dict[str, Any]) -> dict[str, np.ndarray]:
    """The fitted model as the arrays of the `.npz` file the router loads."""
    labels = [str(c) for c in fitted.model.classes_]
    skills = {label: fitted.skills.get(label) or _skill(label, taxonomy) for label in labels}
    meta = {"format": FORMAT, "seed": seed, "labels": labels, "skills": skills,
            "temperature": fitted.temperature, "word_ngrams": list(WORD_NGRAMS),
            "char_ngrams": list(CHAR_NGRAMS), "max_chars": MAX_CHARS,
            "out_of_scope": OUT_OF_SCOPE if OUT_OF_SCOPE in labels else None,
            "trained_on": trained_on}
    n_words = len(fitted.words.vocabulary_)
    coef = np.asarray(fitted.model.coef_, dtype=np.float32)
    intercept = np.asarray(fitted.model.intercept_, dtype=np.float32)
    if len(labels) == 2:  # binary logistic regression keeps one row: make it two
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.asarray([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
    return {
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
        "word_vocab": _vocab_bytes(fitted.words.vocabulary_),
        "word_idf": np.asarray(fitted.words.idf_, dtype=np.float32),
        "char_vocab": _vocab_bytes(fitted.chars.vocabulary_),
        "char_idf": np.asarray(fitted.chars.idf_, dtype=np.float32),
        # features × classes, so scoring gathers the rows of the features a text has
        "weights_words": np.ascontiguousarray(coef[:, :n_words].T).astype(np.float16),
        "weights_chars": np.ascontiguousarray(coef[:, n_words:].T).astype(np.float16),
        "intercept": intercept,
    }


def _vocab_bytes(vocabulary: dict[str, int]) -> np.ndarray:
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    if any("\n" in t for t in terms):  # never: tokens hold no new line, char_wb n-grams neither
        raise ValueError("a vocabulary term holds a new line")
    return np.frombuffer("\n".join(terms).encode(), dtype=np.uint8)


def split(examples: list[Example], seed: int = 0, test_size: float = 0.2
          ) -> tuple[list[Example], list[Example]]:
    """A stratified, seeded train/held-out split."""
    from sklearn.model_selection import train_test_split

    if test_size <= 0:
        return list(examples), []
    train_part, test_part = train_test_split(examples, test_size=test_size, random_state=seed,
                                             stratify=[e.label for e in examples])
    return list(train_part), list(test_part)


def evaluate(classifier: IntentClassifierLike, examples: list[Example]) -> tuple[float, float]:
    """(accuracy, macro-F1) of any intent classifier on labelled examples."""
    from sklearn.metrics import accuracy_score, f1_score

    truth = [e.label for e in examples]
    # a rejected text ("unknown") is right when the truth is the reject class
    predicted = [OUT_OF_SCOPE if (i := classifier.predict(e.text).intent) == "unknown" else i
                 for e in examples]
    return (round(float(accuracy_score(truth, predicted)), 4),
            round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4))


def train(examples: list[Example], taxonomy: Taxonomy, seed: int = 0, test_size: float = 0.2,
          skills: dict[str, str] | None = None, c: float = 10.0
          ) -> tuple[dict[str, np.ndarray], Report]:
    """Fit on a stratified split; calibrate the temperature and report accuracy and macro-F1 of
    the saved model (as the router will score it) on the held-out part. With `test_size` 0 the
    model is fitted on everything (temperature from an internal 10 % split) and nothing is
    reported."""
    mapping = {e.label: e.skill for e in examples if e.skill}
    mapping.update(skills or {})
    train_part, test_part = split(examples, seed, test_size)
    if test_part:
        fitted = fit([e.text for e in train_part], [e.label for e in train_part], seed, c)
        fitted.temperature = calibrate(fitted, [e.text for e in test_part],
                                       [e.label for e in test_part])
    else:
        inner_train, inner_test = split(examples, seed, 0.1)
        probe = fit([e.text for e in inner_train], [e.label for e in inner_train], seed, c)
        temperature = calibrate(probe, [e.text for e in inner_test],
                                [e.label for e in inner_test])
        fitted = fit([e.text for e in train_part], [e.label for e in train_part], seed, c)
        fitted.temperature = temperature
    fitted.skills = mapping
    digest = hashlib.sha256("\n".join(f"{e.text}\t{e.label}" for e in examples).encode())
    trained_on: dict[str, Any] = {"rows": len(examples), "sha256": digest.hexdigest(),
                                  "held_out": len(test_part)}
    arrays = to_arrays(fitted, taxonomy, seed, trained_on)
    accuracy = macro_f1 = 0.0
    if test_part:
        accuracy, macro_f1 = evaluate(StatisticalClassifier(arrays, taxonomy, "model"), test_part)
        meta = json.loads(arrays["meta"].tobytes())
        meta["trained_on"].update(accuracy=accuracy, macro_f1=macro_f1)
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    return arrays, Report(accuracy, macro_f1, len(train_part), len(test_part),
                          len(fitted.model.classes_))


def _skill(label: str, taxonomy: Taxonomy) -> str:
    intent = taxonomy.by_name.get(label)
    return intent.skill if intent else taxonomy.fallback_skill


def save(arrays: dict[str, np.ndarray], path: Path) -> None:
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def _scorer(fitted: Fitted) -> StatisticalClassifier:
    from services.router.policy import load_taxonomy

    return StatisticalClassifier(to_arrays(fitted, load_taxonomy(), 0, {}), load_taxonomy(),
                                 "probe")


class StatisticalClassifier:
    """Scores a text with a trained model file; evidence names the n-grams that weighed most."""

    def __init__(self, arrays: Any, taxonomy: Taxonomy, name: str) -> None:
        meta = json.loads(bytes(arrays["meta"]).decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format: expected {FORMAT!r}, got {meta.get('format')!r}: "
                             "retrain with `switchboard classifier train`")
        self.name = name
        self.meta = meta
        self.labels: list[str] = meta["labels"]
        self.skills: dict[str, str] = {label: meta["skills"].get(label) or taxonomy.fallback_skill
                                       for label in self.labels}
        self.fallback_skill = taxonomy.fallback_skill
        self.temperature = float(meta.get("temperature", 1.0))
        self.max_chars = min(int(meta.get("max_chars", MAX_CHARS)), SCORE_CHARS)
        self.oos = self.labels.index(OUT_OF_SCOPE) if OUT_OF_SCOPE in self.labels else None
        self.word_terms = bytes(arrays["word_vocab"]).decode().split("\n")
        self.char_terms = bytes(arrays["char_vocab"]).decode().split("\n")
        self.word_index = {t: i for i, t in enumerate(self.word_terms)}
        self.char_index = {t: i for i, t in enumerate(self.char_terms)}
        self.word_idf = np.asarray(arrays["word_idf"], dtype=np.float64)
        self.char_idf = np.asarray(arrays["char_idf"], dtype=np.float64)
        self.w_words = np.asarray(arrays["weights_words"], dtype=np.float32)
        self.w_chars = np.asarray(arrays["weights_chars"], dtype=np.float32)
        self.intercept = np.asarray(arrays["intercept"], dtype=np.float64)

    @classmethod
    def load(cls, path: Path | str, taxonomy: Taxonomy) -> StatisticalClassifier:
        """A model file; `default` is the model shipped in the package."""
        if str(path) == DEFAULT_MODEL:
            source = resources.files("services.router") / "models" / "default-intent-model.npz"
            with source.open("rb") as f, np.load(f, allow_pickle=False) as arrays:
                return cls(dict(arrays), taxonomy, "model:default")
        with np.load(Path(path), allow_pickle=False) as arrays:
            return cls(dict(arrays), taxonomy, f"model:{Path(path).name}")

    def _features(self, grams: list[str], index: dict[str, int], idf: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        # Counted all at once (Counter counts a list in C), then looked up once per distinct
        # gram: filtering each gram through a generator first was most of `predict`.
        found = [(index[g], n) for g, n in Counter(grams).items() if g in index]
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids = np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))
        tf = 1.0 + np.log(np.fromiter((n for _, n in found), dtype=np.float64, count=len(found)))
        values = tf * idf[ids]
        return ids, values / np.linalg.norm(values)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        text = text[: self.max_chars]
        wi, wv = self._features(word_grams(text), self.word_index, self.word_idf)
        ci, cv = self._features(char_grams(text), self.char_index, self.char_idf)
        return wi, wv, ci, cv

    def _scores(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(word feature ids, their values, logits)."""
        wi, wv, ci, cv = self.features(text)
        z = self.intercept.copy()
        if len(wi):
            z += wv @ self.w_words[wi]
        if len(ci):
            z += cv @ self.w_chars[ci]
        return wi, wv, z

    def logits(self, text: str) -> np.ndarray:
        return self._scores(text)[2]

    def probabilities(self, text: str) -> np.ndarray:
        """Calibrated class probabilities (`temperature` 1: scikit-learn's `predict_proba`)."""
        z = self.logits(text) / self.temperature
        exp = np.exp(z - z.max())
        result: np.ndarray = exp / exp.sum()
        return result

    def predict(self, text: str) -> IntentGuess:
        wi, wv, z = self._scores(text)
        z = z / self.temperature
        exp = np.exp(z - z.max())
        probs = exp / exp.sum()
        best = int(probs.argmax())
        label = self.labels[best]
        if best == self.oos:
            return IntentGuess("unknown", self.fallback_skill, 0.0,
                               ((f"intent: {self.name} → out of scope (p={probs[best]:.2f}), "
                                "no intent of the model"),), self.name)
        evidence = [f"intent: {self.name} → {label} (p={probs[best]:.2f})"]
        if len(wi):
            weights = wv * self.w_words[wi, best]
            top = [int(wi[i]) for i in np.argsort(-weights)[:3] if weights[i] > 0]
            if top:
                words = ", ".join(repr(self.word_terms[i]) for i in top)
                evidence.append(f"intent: words weighing most: {words}")
        return IntentGuess(label, self.skills[label], round(float(probs[best]), 3),
                           tuple(evidence), self.name)
