"""Classification of a contact: intent → skill, urgency, sentiment and frustration, language,
authority needed, repeat contact and supervisor requests; every field with its evidence.

Pure: the caller passes the customer's recent contacts (for repeat detection) and the clock.
The intent classifier is pluggable (`IntentClassifier`): the transparent rules classifier over
the taxonomy file by default, or a trained model (`services.router.model`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from services.router.policy import RoutingPolicy, Taxonomy
from shared.channels import registry
from shared.contracts.case_events import CaseClassified, ContactReceived, Priority
from shared.contracts.inbound import CustomerIdentity
from shared.keys import keyring

PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
# Bounds that keep classification's cost independent of the contact's length: VADER is
# quadratic in its input and a language identifier needs no more than a paragraph.
LANGUAGE_CHARS = 600
SENTIMENT_CHARS = 1000
SENTIMENT_SENTENCES = 10
SENTENCE_CHARS = 250
TEXT_CHARS = 2000  # intent, urgency, supervisor and authority read the start of a long contact
# Markers VADER does not weigh: the customer says they have tried before or shouts.
_REPEAT_MARKERS = re.compile(
    r"\b(?:again|still|(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th)) time|already "
    r"(?:told|called|wrote|written|asked|contacted)|nobody|no one|every time|for weeks"
    r"|(?:\d+|three|four|five|six|several|many|so many) times"
    r"|schon wieder|immer noch|(?:zum )?(?:dritten|zweiten|x-ten) mal|seit wochen|niemand"
    r"|otra vez|(?:la )?(?:segunda|tercera) vez|nadie|desde hace semanas)\b", re.I)
_SHOUT = re.compile(r"\b[A-ZÄÖÜÑ]{4,}\b")
# Anger VADER misses: profanity (it scores some of it positive), angry emoji, and German and
# Spanish words (VADER's lexicon is English).
_ANGER = re.compile(
    r"f+u+c+k\w*|\bf[*#@!]+\w*|\bsh[i*]t\w*|\b(?:"
    r"crap\w*|wtf|bullsh\w*|scam\w*"
    r"|rip(?:-| )?off|damn\w*|pathetic|useless|ridiculous|disgust\w*"
    r"|fed up|sick (?:and tired )?of|worst|joke|unacceptable"
    r"|disgrace\w*|shambles|trash|garbage|rubbish|appalling"
    r"|outrageous|incompetent|done with (?:you|your)|never again"
    r"|stinksauer|das allerletzte|unterirdisch|saftladen|zumutung"
    r"|hasta las narices|mal[íi]sim[oa]|porquer[íi]a|vaya servicio"
    r"|un desastre|harta?s? de|verg[üu]enza"
    r"|scheiß\w*|schei(?:ss|ß)e|verdammt\w*|mist|frechheit|unversch[äa]mt\w*"
    r"|katastroph\w*|l[äa]cherlich\w*|abzocke\w*|betr[üu]g\w*|sauer|w[üu]tend"
    r"|inakzeptabel|nie wieder|zum kotzen|unf[äa]hig\w*|nervt?"
    r"|mierda|joder|co[ñn]o|estafa\w*|verg[üu]enza|inaceptable"
    r"|hart[oa]s?|p[ée]sim[oa]|fatal|rid[íi]cul[oa]|indignad[oa]"
    r"|cabread[oa]|basura|timo|nunca m[áa]s|incompetentes?"
    r")\b"
    r"|[\U0001F620\U0001F621\U0001F624\U0001F92C\U0001F4A2\U0001F44E\U0001F595\U0001F612"
    r"\U0001F644\U0001F4A9\U0001F643]", re.I)
# Sarcasm: praise next to a broken or late service ("Love the new update!!!! It keeps freezing").
_PRAISE = re.compile(
    r"\b(?:love|great|awesome|fantastic|brilliant|wonderful|perfect|amazing|thanks a lot"
    r"|well done|good job|super|toll|klasse|danke auch|genial|genial|estupendo|perfecto"
    r"|fant[áa]stico|maravilloso|muchas gracias)\b", re.I)
_TROUBLE = re.compile(
    r"\b(?:freez\w*|crash\w*|broken|won'?t|doesn'?t|didn'?t|not working|stopped|never"
    r"|drains?|dead|waiting|still no|nothing works|lost|charged me twice|again"
    r"|funktioniert nichts?|geht nichts?|kaputt|abgestürzt|wieder|funciona|roto|otra vez|nunca)\b"
    , re.I)
_SARCASM = re.compile(r"\b(?:thanks for nothing|yeah right|oh great|just great|danke für nichts"
                      r"|gracias por nada)\b", re.I)
_AMOUNT = re.compile(
    r"(?:(?P<pre>[$€£])\s?(?P<a>\d[\d,]*(?:\.\d{1,2})?))"
    r"|(?:(?P<b>\d[\d,]*(?:\.\d{1,2})?)\s?(?:usd|eur|gbp|dollars?|euros?|pounds?|€|\$|£))", re.I)


@dataclass(frozen=True)
class IntentGuess:
    intent: str
    skill: str
    confidence: float
    evidence: tuple[str, ...]
    classifier: str


class IntentClassifier(Protocol):
    name: str

    def predict(self, text: str) -> IntentGuess: ...


class RulesClassifier:
    """Keyword rules from the taxonomy: the skill with the most matching keywords, then its
    intent with the most (ties: the earlier intent in the file). Confidence grows with the
    intent's matches and shrinks with each match of another skill."""

    name = "rules"

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        self._patterns = [
            (intent, [re.compile(rf"\b{k}\b", re.I) for k in intent.keywords])
            for intent in taxonomy.intents
        ]

    def predict(self, text: str) -> IntentGuess:
        hits: list[tuple[int, int, str, str, list[str]]] = []
        for order, (intent, patterns) in enumerate(self._patterns):
            found = [m.group(0) for p in patterns if (m := p.search(text))]
            if found:
                hits.append((len(found), -order, intent.name, intent.skill, found))
        if not hits:
            return IntentGuess("unknown", self.taxonomy.fallback_skill, 0.0,
                               ("intent: no keyword of the taxonomy matched",), self.name)
        by_skill: dict[str, int] = {}
        for count, _, _, skill, _ in hits:
            by_skill[skill] = by_skill.get(skill, 0) + count
        skill = max(by_skill, key=lambda s: (by_skill[s], -min(-h[1] for h in hits
                                                                if h[3] == s)))
        count, _, name, _, words = max(h for h in hits if h[3] == skill)
        share = by_skill[skill] / sum(by_skill.values())
        rivals = sum(by_skill.values()) - by_skill[skill]
        confidence = round(max(0.05, min(0.95, 0.45 + 0.2 * count - 0.15 * rivals)), 3)
        evidence = [f"intent: keyword {w!r} → {name} ({skill})" for w in words]
        others = sorted(s for s in by_skill if s != skill)
        if others:
            evidence.append(f"intent: keywords of {', '.join(others)} too (share {share:.0%})")
        return IntentGuess(name, skill, confidence, tuple(evidence), self.name)


@dataclass(frozen=True)
class PriorContact:
    """An earlier classified contact of the same customer (for repeat-contact detection)."""

    case_id: str
    intent: str
    at: datetime


@lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def _sentences(text: str) -> list[str]:
    """The text's first sentences, each bounded: what sentiment reads."""
    bounded = text[:SENTIMENT_CHARS]
    found = [p[:SENTENCE_CHARS] for p in re.split(r"(?<=[.!?\n])\s+", bounded) if p.strip()]
    return found[:SENTIMENT_SENTENCES] or [bounded[:SENTENCE_CHARS]]


def sentiment_of(text: str, language: str) -> tuple[float, str]:
    """(score, evidence): VADER for English; its lexicon is English ("die" is a negative word to
    it), so other languages get 0 and rely on the markers."""
    if language != "en":
        return 0.0, f"sentiment: not scored for {language!r} (VADER is English-only), markers only"
    score = _sentiment(text)
    return score, f"sentiment: VADER compound {score:+.2f} (most negative sentence)"


def _sentiment(text: str) -> float:
    """VADER's compound score of the most negative sentence, if any is negative; else of the
    (bounded) whole text.
    Per sentence, because VADER's negation carries across sentence ends: in "Still nothing.
    Useless!" the "nothing" would flip "Useless" to praise. The text is bounded first
    (`SENTIMENT_CHARS`, `SENTIMENT_SENTENCES` of `SENTENCE_CHARS`): VADER is quadratic."""
    vader = _vader()
    sentences = _sentences(text)
    worst: float = min(vader.polarity_scores(s)["compound"] for s in sentences)
    whole: float = vader.polarity_scores(" ".join(sentences)[:SENTENCE_CHARS * 2])["compound"]
    return round(min(worst, whole) if worst < 0 else whole, 3)


def frustration_markers(text: str) -> list[str]:
    """What says a customer is frustrated beyond VADER's score: repeat contact words, shouting,
    "!!", profanity, angry emoji, German and Spanish anger words, sarcastic praise."""
    bounded = text[:SENTIMENT_CHARS]
    markers = [m.group(0) for m in _REPEAT_MARKERS.finditer(bounded)]
    markers += _SHOUT.findall(bounded)
    if "!!" in bounded:
        markers.append("!!")
    markers += [f"anger {m.group(0)!r}" for m in _ANGER.finditer(bounded)]
    if _SARCASM.search(bounded) or (_PRAISE.search(bounded) and _TROUBLE.search(bounded)):
        markers.append("sarcasm (praise of a broken service)")
    return markers


def is_frustrated(sentiment: float, markers: Sequence[str], repeats: int = 0) -> bool:
    """Frustrated: a clearly negative sentence, anger or sarcasm, or a marker without praise."""
    strong = any(m.startswith(("anger", "sarcasm")) for m in markers)
    return sentiment <= -0.5 or strong or (sentiment < 0.3 and len(markers) >= 1) \
        or len(markers) >= 3 or repeats >= 2


def customer_key(customer: CustomerIdentity) -> str | None:
    """Who the customer is, for repeat detection: the strongest identifier we have, as its
    keyed hash (`shared.keys`; kept in router_contact, so never the address or number itself).
    After a key rotation, contacts recorded under the previous key no longer count as repeats."""
    if customer.external_id:
        plain = f"id:{customer.external_id}"
    elif customer.email:
        plain = f"email:{customer.email.lower()}"
    elif customer.phone:
        plain = f"phone:{customer.phone}"
    else:
        return None
    return keyring().stored(plain)


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    """py3langid's model (shipped in its package, 97 languages): deterministic, sub-millisecond."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of a text's language, from its first `LANGUAGE_CHARS`."""
    lang, prob = _language_identifier().classify(text[:LANGUAGE_CHARS])
    return str(lang), float(prob)


def detect_language(text: str, hint: str | None, policy: RoutingPolicy) -> tuple[str, float, str]:
    """(language, confidence, evidence). A front-end's hint wins; short or unsure text falls
    back to the default language rather than to a language nobody on the floor speaks."""
    return _detect(text, hint, policy)[:3]


def _detect(text: str, hint: str | None, policy: RoutingPolicy
            ) -> tuple[str, float, str, str]:
    """detect_language's answer and the language the text is really in (for sentiment)."""
    if hint and hint.split("-")[0].lower() in policy.supported_languages:
        lang = hint.split("-")[0].lower()
        return lang, 1.0, f"language: front-end says {hint!r}", lang
    letters = sum(ch.isalpha() for ch in text[:LANGUAGE_CHARS])
    if letters < 12:
        return (policy.default_language, 0.5, "language: too little text, default",
                policy.default_language)
    lang, prob = identify_language(text)
    if lang in policy.supported_languages and prob >= policy.language_min_confidence:
        return lang, round(prob, 3), f"language: detected {lang} (p={prob:.2f})", lang
    return (policy.default_language, round(prob, 3),
            f"language: detected {lang} (p={prob:.2f}) not usable, default", lang)


def authority_needed(text: str, taxonomy: Taxonomy, policy: RoutingPolicy
                     ) -> tuple[int, float | None, str | None, list[str]]:
    """(minimum tier, refund amount, account action, evidence)."""
    tier, amount, action, evidence = 1, None, None, []
    refund_words = re.compile(taxonomy.refund_pattern, re.I)
    for sentence in re.split(r"(?<=[.!?\n])\s+", text):
        if not refund_words.search(sentence):
            continue
        for m in _AMOUNT.finditer(sentence):
            value = float((m.group("a") or m.group("b")).replace(",", ""))
            if amount is None or value > amount:
                amount = value
    if amount is not None:
        tier = policy.tier_for_refund(amount)
        evidence.append(f"min_authority_tier: refund or credit of {amount:g} → tier {tier}")
    for a in taxonomy.account_actions:
        if re.search(a.pattern, text, re.I) and a.min_tier >= tier:
            tier, action = a.min_tier, a.name
            evidence.append(f"min_authority_tier: account action {a.name!r} → tier {a.min_tier}")
    return tier, amount, action, evidence


def _bump(priority: Priority, levels: int = 1) -> Priority:
    return PRIORITIES[min(len(PRIORITIES) - 1, PRIORITIES.index(priority) + levels)]


def classify(contact: ContactReceived, classifier: IntentClassifier, taxonomy: Taxonomy,
             policy: RoutingPolicy, history: Sequence[PriorContact], now: datetime
             ) -> CaseClassified:
    text = f"{contact.subject or ''}\n{contact.text[:TEXT_CHARS]}".strip()
    guess = classifier.predict(text)
    evidence = list(guess.evidence)
    intent = taxonomy.by_name.get(guess.intent)
    needs_triage = guess.confidence < policy.confidence_threshold
    skill = guess.skill
    min_proficiency = intent.min_proficiency if intent else 1
    preferred = list(intent.preferred_skills) if intent else []
    if needs_triage:
        evidence.append(f"skill: confidence {guess.confidence:.2f} below "
                        f"{policy.confidence_threshold:.2f}, to {policy.triage_skill} for triage")
        skill, min_proficiency, preferred = policy.triage_skill, 1, []

    language, lang_conf, lang_evidence, written_in = _detect(
        contact.text, contact.details.get("language"), policy)
    sentiment, sentiment_evidence = sentiment_of(text, written_in)
    markers = frustration_markers(text)
    evidence.append(sentiment_evidence)

    hours = policy.repeat_window_hours
    since = now - timedelta(hours=hours)
    repeats = [p for p in history if p.intent == guess.intent and p.at >= since
               and guess.intent != "unknown"]
    if repeats:
        cases = ", ".join(sorted({p.case_id for p in repeats}))
        evidence.append(f"repeat_contact: {len(repeats)} earlier contact(s) on {guess.intent} "
                        f"within {hours:g} h (cases {cases})")

    frustrated = is_frustrated(sentiment, markers, len(repeats))
    if frustrated:
        why = [f"sentiment {sentiment:+.2f}"] + [m if m.startswith(("anger", "sarcasm"))
                                                 else f"{m!r}" for m in markers[:4]]
        if len(repeats) >= 2:
            why.append(f"{len(repeats) + 1}th contact")
        evidence.append(f"frustrated: {', '.join(why)}")

    taxonomy_urgent = re.search(taxonomy.urgent_pattern, text, re.I)
    supervisor = re.search(taxonomy.supervisor_pattern, text, re.I)
    priority: Priority = "normal"
    if taxonomy_urgent:
        priority = "urgent"
        evidence.append(f"priority: urgency word {taxonomy_urgent.group(0)!r}")
    elif registry.get(contact.channel).live:
        priority = "high"
        evidence.append(f"priority: {contact.channel} contact waits live")
    if frustrated:  # de-escalate first: a frustrated customer moves up
        priority = _bump(priority)
        evidence.append("priority: raised one level for frustration")
    if supervisor:
        evidence.append(f"supervisor_requested: {supervisor.group(0)!r}")
        if PRIORITIES.index(priority) < PRIORITIES.index("high"):
            priority = "high"
            evidence.append("priority: high for a supervisor request")

    evidence.append(lang_evidence)
    tier, amount, action, tier_evidence = authority_needed(text, taxonomy, policy)
    evidence += tier_evidence
    return CaseClassified(
        case_id=contact.case_id, skill=skill, queue=f"{skill}-{contact.channel}",
        priority=priority, language=language, confidence=guess.confidence, evidence=evidence,
        intent=guess.intent, classifier=guess.classifier, needs_triage=needs_triage,
        min_proficiency=min_proficiency, preferred_skills=preferred,
        urgent=bool(taxonomy_urgent), sentiment=sentiment, frustrated=frustrated,
        language_confidence=lang_conf, min_authority_tier=tier, refund_amount=amount,
        account_action=action, repeat_contact=bool(repeats), repeat_count=len(repeats),
        supervisor_requested=bool(supervisor),
    )
