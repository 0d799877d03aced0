"""Free-text prompts → what the model knows, or "no match".

A prompt is first looked up exactly (name or listed synonym, ``inference.vocabulary.lookup``).
Otherwise it is embedded on the fly by the frozen MiniLM encoder and compared (cosine) with every
name and synonym the model knows (``vocab.bank_phrases``); the nearest phrase names the
structure when its similarity reaches the threshold, else the answer is "no match" — never a
random mask. The threshold is calibrated on phrase lists in ``vocab.py``; see docs/model.md.

The network is always queried with the prompt's *own* embedding (so a synonym exercises the
text connector); the match only decides whether to answer and which codes the answer carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.model.vocab import LESION_KINDS, SEG_NAMES, bank_phrases
from inference.vocabulary import lookup

Embed = Callable[[Sequence[str]], np.ndarray]

# "series 3, image 41:", "(series 3, image 15)", "Series 3 image 38:", "image 7 -": the image
# reference of a report snippet. It says where, not what, and dilutes the similarity of a
# snippet's finding to the phrases the model knows (calibration in docs/model.md).
_IMAGE_REFERENCE = re.compile(
    r"\(?\s*(?:series|se)\s*#?\s*\d+\s*[,;/]?\s*(?:image|img|im|slice)\s*#?\s*\d+\s*\)?\s*[:\-]?"
    r"|\(?\s*(?:image|img|slice)\s*#?\s*\d+\s*\)?\s*[:\-]?",
    re.IGNORECASE,
)


def snippet_finding(snippet: str) -> str:
    """A report snippet without its image reference: ``"series 3, image 41: 2 cm hypodense liver
    lesion"`` → ``"2 cm hypodense liver lesion"`` (the text whose meaning decides "no match")."""
    rest = _IMAGE_REFERENCE.sub(" ", snippet)
    return " ".join(rest.split()).strip(" :,.;-") or snippet.strip()


@dataclass(frozen=True)
class PromptMatch:
    prompt: str
    name: str | None  # canonical name the model will answer for, None = no match
    similarity: float  # 1.0 for an exact vocabulary hit
    nearest: str  # nearest known phrase
    exact: bool

    @property
    def matched(self) -> bool:
        return self.name is not None

    def reason(self, threshold: float) -> str:
        return f"no match: best {self.nearest!r} similarity {self.similarity:.2f} < {threshold:.2f}"


class PromptMatcher:
    def __init__(self, embed: Embed, *, threshold: float) -> None:
        self.embed = embed
        self.threshold = threshold
        phrases = bank_phrases()
        self._phrases = [p for p, _ in phrases]
        self._names = [n for _, n in phrases]
        self._bank: np.ndarray | None = None

    @property
    def bank(self) -> np.ndarray:
        if self._bank is None:
            self._bank = self.embed(self._phrases)
        return self._bank

    def nearest(self, prompt: str) -> tuple[str, str, float]:
        """(nearest phrase, its canonical name, cosine similarity)."""
        q = self.embed([prompt])[0]
        sims = self.bank @ q
        i = int(np.argmax(sims))
        return self._phrases[i], self._names[i], float(sims[i])

    def snippet_similarity(self, snippet: str) -> tuple[str, str, float]:
        """:meth:`nearest` for a report snippet's finding (its image reference removed)."""
        return self.nearest(snippet_finding(snippet))

    def match(self, prompt: str) -> PromptMatch:
        hit = lookup(prompt)
        if hit is not None and (hit.name in SEG_NAMES or hit.name in LESION_KINDS):
            return PromptMatch(prompt=prompt, name=hit.name, similarity=1.0, nearest=hit.name, exact=True)
        phrase, name, sim = self.nearest(prompt)
        ok = sim >= self.threshold
        return PromptMatch(
            prompt=prompt, name=name if ok else None, similarity=sim, nearest=phrase, exact=False
        )


@dataclass(frozen=True)
class Calibration:
    threshold: float
    known_accepted: float  # share of known-meaning phrases accepted
    known_right: float  # share of known-meaning phrases accepted AND mapped to the right name
    unknown_rejected: float
    scores_known: tuple[float, ...]
    scores_unknown: tuple[float, ...]


def calibrate(
    embed: Embed,
    known: Sequence[tuple[str, str]],
    unknown: Sequence[str],
    *,
    candidates: Sequence[float] = tuple(np.round(np.arange(0.30, 0.80, 0.01), 2)),
) -> Calibration:
    """Pick the threshold maximising (known accepted and right) + (unknown rejected)."""
    matcher = PromptMatcher(embed, threshold=0.0)
    k = [matcher.nearest(text) for text, _ in known]
    u = [matcher.nearest(text) for text in unknown]
    best: Calibration | None = None
    for t in candidates:
        acc = np.mean([s >= t for _, _, s in k])
        right = np.mean([s >= t and n == want for (_, n, s), (_, want) in zip(k, known, strict=True)])
        rej = np.mean([s < t for _, _, s in u])
        cal = Calibration(
            float(t),
            float(acc),
            float(right),
            float(rej),
            tuple(round(s, 3) for _, _, s in k),
            tuple(round(s, 3) for _, _, s in u),
        )
        if best is None or (right + rej) > (best.known_right + best.unknown_rejected) + 1e-9:
            best = cal
    assert best is not None
    return best


def calibrate_snippets(
    embed: Embed,
    known: Sequence[str],
    unknown: Sequence[str],
    *,
    candidates: Sequence[float] = tuple(np.round(np.arange(0.30, 0.80, 0.01), 2)),
) -> Calibration:
    """The snippet (LOC) threshold maximising (known accepted) + (unknown rejected); the lowest
    such threshold, so a real finding is never refused for a margin the lists do not show."""
    matcher = PromptMatcher(embed, threshold=0.0)
    k = [matcher.snippet_similarity(t)[2] for t in known]
    u = [matcher.snippet_similarity(t)[2] for t in unknown]
    best: Calibration | None = None
    for t in candidates:
        acc = float(np.mean([s >= t for s in k]))
        rej = float(np.mean([s < t for s in u]))
        if best is None or acc + rej > best.known_accepted + best.unknown_rejected + 1e-9:
            best = Calibration(
                float(t), acc, acc, rej, tuple(round(s, 3) for s in k), tuple(round(s, 3) for s in u)
            )
    assert best is not None
    return best
