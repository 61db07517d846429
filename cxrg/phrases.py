"""One reading of a phrase: free text (or a prompt) -> the canonical "{location} {pathology}" prompt.

`normalise` is the single way a phrase becomes a prompt, for every command that takes one. It uses the
curation rules (`cxrg.curation`): the same synonyms, location lexicon (lobes -> zones, "retrocardiac" ->
left lower, "bibasilar", RLL/LUL ...), plurals, laterality words, negation, and the same canonical form
(`cxrg.vocab.canonical`: an effusion named by its side is in that side's pleural space, cardiomegaly is
at the heart, bilateral pairs merge). The rules are listed in docs/curation.md ("Reading a phrase").

    >>> normalise("Small left effusion").prompt
    'left pleural pleural effusion'
    >>> normalise("left lower lobe pneumonia").prompt
    'left lower pneumonia'
    >>> normalise("left effusion", style="paper").prompt
    'left pleural effusion'

The reader refuses what it cannot express; it never reads a phrase as something else. Every word must be
understood (a finding, a location, a grammatical word), be a known harmless modifier (size, severity,
texture, course, certainty: "small", "patchy", "stable", "possible"), or be a typo one edit away from a
single vocabulary word (corrected, and the correction recorded in `NormalisedPhrase.corrections`);
anything else is refused with the word named ("'elbow' is not a chest location"). Absent, past and
questioned findings ("no longer seen", "unlikely", "history of", "rule out"), alternatives ("or",
"versus") and contradictory sides ("right lingular") are refused too. The word tables below are the
decisions; docs/curation.md explains each.

A prompt already in canonical form comes back unchanged; `exact=True` turns all of this off and accepts
only vocabulary prompts, read by `cxrg.vocab.Prompt.parse`. A phrase that cannot be read raises
`InputError` whose message says why and names the closest vocabulary prompts.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from cxrg.curation.anatomy import LEXICON
from cxrg.curation.mentions import (
    FINDINGS_PATTERN,
    NEGATED,
    PRESENT,
    RESOLVED,
    UNCERTAIN,
    assertion,
    mention_pattern,
)
from cxrg.curation.rules import Analysis, analyse, rule_locations
from cxrg.curation.text import normalise as lower_text
from cxrg.errors import InputError
from cxrg.vocab import LOCATIONS, PATHOLOGIES, STYLES, Prompt, canonical, canonical_pathology

__all__ = ["NormalisedPhrase", "normalise", "closest_prompts", "vocabulary_prompts", "MAX_WORDS", "MAX_CHARS",
           "STYLES"]

MAX_WORDS = 60
"""The longest phrase read, in words. A phrase names one finding; a longer text is a report (pass its
sentence). The limit keeps reading linear in the length of the input: a 1,000-word text is refused after
one pass over it."""


MAX_CHARS = 1000
"""The longest phrase read, in characters (60 words of 16 letters)."""


@dataclass(frozen=True)
class NormalisedPhrase:
    phrase: str
    """The phrase as given."""
    prompt: str
    """The canonical prompt text (what a model is given)."""
    structured: Prompt
    """The same prompt, structured (locations, pathology)."""
    corrections: tuple[tuple[str, str], ...] = ()
    """Words read as another word: typos one edit from a single vocabulary word ("pneumothroax" ->
    "pneumothorax") and side abbreviations ("lt" -> "left"), in phrase order."""
    style: str = "cxrg"
    """The prompt style (`cxrg.vocab.STYLES`)."""

    @property
    def changed(self) -> bool:
        """Whether the prompt differs from the phrase (letter case and spacing aside)."""
        return " ".join(self.phrase.lower().split()) != self.prompt

    @property
    def note(self) -> str:
        """What the reader did, for the user: "read 'pneumothroax' as 'pneumothorax'; prompt '...'"."""
        parts = [f"read {typed!r} as {word!r}" for typed, word in self.corrections]
        if self.changed:
            parts.append(f"prompt {self.prompt!r}")
        return "; ".join(parts)


# --- the words a phrase may hold (docs/curation.md, "What the reader understands") -----------------------

# Size, severity, extent, texture and course: they say how much or what kind, never where or whether.
MODIFIERS = frozenset("""
small smaller tiny trace minimal minimally little large larger massive huge moderate moderately mild mildly
slight slightly severe severely marked markedly significant substantial extensive extensively sized size
medium amount degree borderline dense denser faint subtle prominent pronounced worse greater greatest more
most less
predominantly predominant predominately primarily mainly mostly particularly especially relatively somewhat
very increased increasing decreased decreasing improved improving worsened worsening progressive
progressing enlarging enlarged enlargement stable unchanged persistent persisting persists persist
residual new newly developing evolving early acute subacute chronic recurrent again continued
redemonstrated resolving complete completely partial partially near nearly
patchy focal streaky hazy linear platelike plate like subsegmental segmental lobar
multilobar multifocal diffuse diffusely scattered confluent ill defined poorly well reticular
reticulonodular nodular interstitial alveolar airspace air ground glass groundglass wedge shaped band
bandlike discoid rounded round masslike heterogeneous homogeneous coarse fine fluffy layering loculated
dependent compressive passive obstructive parenchymal peribronchial peribronchovascular vascular venous
peripheral medial lateral anterior posterior superior inferior subpleural area areas region focus foci
portion aspect periphery component changes change process disease pattern findings finding silhouette
contour shadow space obscuring silhouetting border borders associated accompanying underlying
superimposed additional chest
""".split())

# Certainty words that keep the finding where it is (docs/curation.md: a hedge does not move a finding).
HEDGES = frozenset("""
possible possibly probable probably likely suspected suspicious suspect questionable presumed presumably
concerning concern worrisome suggestive suggesting suggests suggest compatible consistent equivocal may
might could
represent represents representing reflect reflects reflecting favored favor favour favoured keeping due
secondary cannot
""".split())

GRAMMAR = frozenset("""
the a an of in at on within involving along over overlying throughout into to near adjacent through across
from about around toward towards and with is are was were be been being has have had there which that this
these those both also still now seen noted identified visualized visible demonstrated evident appreciated
present appears appear appearing remains remain extending extends extend than as such for some its it can
projecting located place behind measuring measures measure approximately cm mm x by interval
""".split())

# Words that say the finding is absent, past or in question: the phrase is refused, whatever else it says.
ABSENT_OR_PAST: dict[str, str] = {
    **dict.fromkeys("resolved resolution cleared clearing removed removal gone disappeared longer".split(),
                    "says the finding is gone"),
    **dict.fromkeys("unlikely doubtful".split(), "says the finding is unlikely"),
    **dict.fromkeys("history hx previous previously prior former formerly old remote healed post status "
                    "s/p".split(), "speaks of a past finding"),
    **dict.fromkeys("rule r/o evaluate evaluation assess assessment query question exclude excluded ?"
                    .split(), "asks a question instead of stating a finding"),
}
# Negation words are accepted only where the curation's rules show what they negate: another finding
# ("pneumonia without effusion") or no finding at all ("no change in the left effusion").
NEGATIONS = frozenset("no not without negative absent absence free none neither".split())
ALTERNATIVES = frozenset({"or", "versus", "vs", "either", "nor", "/"})

# Side words cxrg reads (and their abbreviations: L, R, lt, rt, b/l; "bilat" is in the lexicon).
SIDE_ABBREVIATIONS: dict[str, str] = {"l": "left", "lt": "left", "r": "right", "rt": "right",
                                      "b/l": "bilateral", "bil": "bilateral", "w/": "with"}
SIDE_WORDS_NOT_READ = frozenset({"sinistral", "dextral", "sinister", "dexter", "laevo", "levo"})

# Anatomy outside the chest: never a chest location (the first reason a word is refused).
NOT_CHEST = frozenset("""
head brain cerebral cerebellar cranial skull scalp face facial eye eyes ocular orbit orbital ear ears nasal
nose mouth oral jaw mandible maxilla tongue lingual tooth teeth dental neck cervical thyroid
larynx pharynx shoulder shoulders arm arms elbow elbows forearm wrist wrists hand hands finger fingers thumb
humerus humeral radius radial ulna ulnar clavicle clavicular scapula scapular abdomen abdominal belly
stomach gastric cardia fundus bowel colon colonic intestine intestinal duodenum duodenal jejunum ileum
liver hepatic spleen splenic kidney kidneys renal pancreas pancreatic gallbladder biliary bladder
peritoneal peritoneum retroperitoneal pelvis pelvic quadrant quadrants epigastric umbilical hip hips groin
inguinal buttock thigh thighs femur femoral knee knees patella leg legs calf tibia tibial fibula ankle
ankles foot feet toe toes heel pedal extremity extremities limb limbs breast breasts nipple skin
subcutaneous soft tissue muscle muscles joint joints bone bones spine spinal vertebra vertebrae vertebral
lumbar sacral sacrum coccyx testis uterus ovary prostate scrotal bubble
""".split())
# Chest anatomy that is none of the 27 locations (the paper drops such areas; so does the reader).
CHEST_ELSEWHERE = frozenset("""
mediastinum mediastinal paramediastinal trachea tracheal paratracheal carina bronchus bronchi aorta aortic
aortopulmonary esophagus esophageal oesophagus pericardial pericardium diaphragm diaphragmatic rib ribs
sternum sternal axilla axillary fissure fissural fissures azygos svc ventricle ventricular atrium atrial
valve subclavian jugular hiatal paraspinal paravertebral thymus wall thoracic thorax
""".split())
# A chest structure named with another finding of its own is that finding, not a place of the phrase's
# finding: "pneumothorax with mediastinal shift", "pericardial effusion" (then refused: not one of the 8).
_STRUCTURE_FINDINGS = frozenset({"shift", "widening", "deviation"})

# The words a typo may be corrected to: finding words, location words and modifiers of 6 letters or more
# (shorter words are too close to others: "hand" is one edit from "and", "ankle" from "angle").
_FINDING_WORDS = frozenset("""
pneumonia pneumonias bronchopneumonia pneumonic pneumothorax pneumothoraces pneumothoraxes
hydropneumothorax effusion effusions pleural hydrothorax blunting blunted opacity opacities opacification
opacifications opacified infiltrate infiltrates infiltration airspace atelectasis atelectases atelectatic
collapse collapsed cardiomegaly enlarged enlargement cardiac silhouette consolidation consolidations
consolidative consolidated edema oedema congestion engorgement
""".split())
_TYPO_MIN = 6
# Other words that look like a typo of a vocabulary word but are not one (one edit from it).
_NOT_TYPOS = frozenset({"lingual", "cardia", "basilic", "infusion", "infusions", "singular"})

_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?|\S")
_WORD = re.compile(r"[a-z]+")
_CHUNK = re.compile(r"\S+")
_NOT_PLAIN = re.compile(r"[^\t\n\r\f\v\x20-\x7e]")  # anything but printable ASCII and white space
_PUNCTUATION = frozenset(",.;:-()")
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2010": "-",
                              "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-"})
# Words that carry a side, and the side; "retrocardiac" and the lingula are on the left.
_SIDE_OF = {"left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral",
            "bilat": "bilateral", "bibasilar": "bilateral", "bibasal": "bilateral", "biapical": "bilateral",
            "bihilar": "bilateral", "rul": "right", "rml": "right", "rll": "right", "lul": "left",
            "lll": "left", "retrocardiac": "left", "lingula": "left", "lingular": "left"}


@dataclass(frozen=True)
class _Reading:
    text: str
    """The phrase as read: NFKC, lower case, abbreviations expanded, typos corrected (spacing kept)."""
    corrections: tuple[tuple[str, str], ...]


def _w(word: str) -> str:
    """A word for a message, shortened: a 1,000-letter "word" is named by its first letters."""
    return repr(word if len(word) <= 40 else word[:37] + "...")


def _refuse(text: str, why: str) -> InputError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    return InputError(f"cannot read phrase {shown!r} as a prompt: {why}", hint=_suggestion(text))


def _plain(text: str) -> str:
    """NFKC (full-width letters become ASCII), typographic punctuation as ASCII; any other non-ASCII
    character (a Cyrillic or Greek look-alike, a zero-width space) is refused, never dropped."""
    plain = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC)
    bad = _NOT_PLAIN.search(plain)
    if bad:
        k, ch = bad.start(), bad.group(0)
        start = max(plain.rfind(" ", 0, k) + 1, 0)
        stop = plain.find(" ", k)
        word = plain[start:stop if stop >= 0 else len(plain)]
        name = unicodedata.name(ch, f"U+{ord(ch):04X}")
        raise _refuse(text, f"{word!r} holds the character {ch!r} ({name}), which is not a Latin "
                            "letter, digit or punctuation; retype the word")
    return plain


def _one_edit(a: str, b: str) -> bool:
    """Whether b is one insertion, deletion, substitution or swap of neighbours away from a."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    k = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[k:] == long[k + 1:]


@cache
def _typo_targets() -> tuple[str, ...]:
    words = _FINDING_WORDS | MODIFIERS | HEDGES | frozenset(LEXICON)
    return tuple(sorted(w for w in words if len(w) >= _TYPO_MIN))


def _correction(word: str) -> list[str]:
    if len(word) < _TYPO_MIN or word in _NOT_TYPOS:
        return []
    return [target for target in _typo_targets() if _one_edit(word, target)]


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _covered(norm: str) -> list[tuple[int, int]]:
    """Character spans of finding words: the 8 findings (both as phrase heads and as report mentions) and
    other findings (nodule, tube ...), which the rules know and keep apart from the finding."""
    spans = [(m.start(), m.end()) for pathology in PATHOLOGIES
             for pattern in (_head_pattern(pathology), mention_pattern(pathology))
             for m in pattern.finditer(norm)]
    spans += [(m.start(), m.end()) for m in FINDINGS_PATTERN.finditer(norm)]
    return spans


@cache
def _finding_literals() -> frozenset[str]:
    """The literal words of the finding patterns ("cardiac", "silhouette", "opacit", "pneumothora" ...): a
    word inside a finding's match is understood only if it is one of them (or begins with one), never
    because a pattern's wildcard swallowed it ("the heart is <anything> enlarged")."""
    sources = [pattern(p).pattern for p in PATHOLOGIES for pattern in (_head_pattern, mention_pattern)]
    sources.append(FINDINGS_PATTERN.pattern)
    return frozenset(w for source in sources for w in re.findall(r"[a-z]{2,}", source.replace("\\w", " ")))


def _literal(tok: str) -> bool:
    """`tok` is a literal of the patterns, up to an optional ending ("opacit" ~ "opacities", "tubes" ~
    "tube")."""
    literals = _finding_literals()
    return tok in literals or any(len(w) >= 4 and (tok.startswith(w) or (len(tok) >= 4 and w.startswith(tok)))
                                  for w in literals)


def _read_words(text: str) -> _Reading:
    """Check every word of the phrase (module docstring) and return the phrase as read, or refuse."""
    if len(text) > MAX_CHARS:
        raise InputError(f"cannot read a text of {len(text):,} characters as a prompt: a phrase is at most "
                         f"{MAX_CHARS:,} characters",
                         hint="give the one sentence or phrase that names the finding")
    for count, _ in enumerate(_CHUNK.finditer(text), start=1):  # stops at the first word too many
        if count > MAX_WORDS:
            raise _too_long()
    low = _plain(text).lower()
    for count, _ in enumerate(_WORD.finditer(low), start=1):
        if count > MAX_WORDS:
            raise _too_long()
    found = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(low)]
    # slash abbreviations are one word: b/l, r/o, s/p, w/
    toks: list[tuple[str, int, int]] = []
    k = 0
    while k < len(found):
        tok, start, end = found[k]
        if k + 1 < len(found) and found[k + 1][0] == "/" and found[k + 1][1] == end:
            nxt = found[k + 2] if k + 2 < len(found) and found[k + 2][1] == end + 1 else None
            pair = f"{tok}/{nxt[0]}" if nxt else f"{tok}/"
            if pair in ("b/l", "r/o", "s/p"):
                toks.append((pair, start, nxt[2]))  # type: ignore[index]
                k += 3
                continue
            if pair.startswith("w/") and tok == "w":
                toks.append(("w/", start, end + 1))
                k += 2
                continue
        toks.append((tok, start, end))
        k += 1
    covered = _covered(lower_text(low))
    others = [(m.start(), m.end()) for m in FINDINGS_PATTERN.finditer(lower_text(low))]
    out: list[str] = []
    corrections: list[tuple[str, str]] = []
    last = 0
    for k, (tok, start, end) in enumerate(toks):
        word = tok
        previous = toks[k - 1][0] if k else ""
        following = toks[k + 1][0] if k + 1 < len(toks) else ""
        inside = any(a <= start and end <= b for a, b in covered) and _literal(tok)
        if tok == "chest" and following in ("tube", "tubes"):
            word = ""  # "right chest tube" is a tube: the side is the device's, as "right tube" reads
        elif tok in SIDE_ABBREVIATIONS and not previous[:1].isdigit():
            word = SIDE_ABBREVIATIONS[tok]
            corrections.append((tok, word))
        elif tok in NOT_CHEST or _singular(tok) in NOT_CHEST:
            raise _refuse(text, f"{_w(tok)} is not a chest location")
        elif tok.startswith("exclud") and _hedged_exclusion(toks, k):
            pass  # "cannot be excluded": a hedge
        elif tok in ABSENT_OR_PAST:
            raise _refuse(text, f"{_w(tok)} {ABSENT_OR_PAST[tok]}")
        elif tok in ALTERNATIVES:
            raise _refuse(text, f"it names alternatives ({_w(tok)}); give one finding at one place")
        elif tok in SIDE_WORDS_NOT_READ:
            raise _refuse(text, f"{_w(tok)} is a side word cxrg does not read; write left, right or "
                                "bilateral")
        elif tok in CHEST_ELSEWHERE or _singular(tok) in CHEST_ELSEWHERE:
            if not (following in _STRUCTURE_FINDINGS or _starts_other(toks, k + 1, others)):
                raise _refuse(text, f"{_w(tok)} is not one of the 27 chest locations cxrg reads")
        elif tok in _STRUCTURE_FINDINGS and (previous in CHEST_ELSEWHERE or _singular(previous) in
                                              CHEST_ELSEWHERE):
            pass
        elif inside or tok in LEXICON or tok in MODIFIERS or tok in HEDGES or tok in GRAMMAR \
                or tok in NEGATIONS or tok[0].isdigit() or tok in _PUNCTUATION:
            pass
        else:
            targets = _correction(tok)
            if len(targets) == 1:
                word = targets[0]
                corrections.append((tok, word))
            elif targets:
                raise _refuse(text, f"{_w(tok)} could be any of {', '.join(map(repr, targets))}; retype it")
            else:
                kind = "symbol" if not tok[0].isalnum() else "word"
                raise _refuse(text, f"{_w(tok)} is a {kind} cxrg does not read (not a finding, a chest "
                                    "location or a size, severity, course or certainty word)")
        out.append(low[last:start] + word)
        last = end
    out.append(low[last:])
    read = "".join(out)
    _check_sides(text, _TOKEN.findall(read))
    return _Reading(read, tuple(corrections))


def _too_long() -> InputError:
    return InputError(f"cannot read a text of more than {MAX_WORDS} words as a prompt: a phrase is at most "
                      f"{MAX_WORDS} words", hint="give the one sentence or phrase that names the finding")


def _starts_other(toks: list[tuple[str, int, int]], k: int, others: list[tuple[int, int]]) -> bool:
    """Whether token k begins another finding that is not one of the 8 ("fracture", "tube", "thickening")."""
    return k < len(toks) and any(a <= toks[k][1] < b for a, b in others)


def _hedged_exclusion(toks: list[tuple[str, int, int]], k: int) -> bool:
    """"cannot be excluded", "cannot exclude", "not excluded", "can not be excluded": a hedge."""
    before = [t for t, _, _ in toks[max(0, k - 3):k]]
    return "cannot" in before or "not" in before


def _check_sides(text: str, words: list[str]) -> None:
    """Neighbouring words that name different sides contradict each other: "right lingular" (the lingula
    is on the left), "left RUL", "bilateral left"."""
    k = 0
    while k < len(words):
        side = _SIDE_OF.get(words[k])
        j = k + 1
        while j < len(words) and words[j] == "-":
            j += 1
        other = _SIDE_OF.get(words[j]) if j < len(words) else None
        if side and other and (side != other or words[k] == words[j]):
            implied = {"retrocardiac", "lingula", "lingular"} & {words[k], words[j]}
            why = f" ({next(iter(implied))} is in the left lung)" if implied else ""
            raise _refuse(text, f"{words[k]!r} and {words[j]!r} name different sides{why}")
        k += 1


# --- the finding ------------------------------------------------------------------------------------------

# Words naming each finding, one finding per word (cxrg.vocab.SYNONYMS lets "opacity" mean pneumonia in a
# report; in a phrase, the word says which finding it is). Longest forms win.
_HEADS: dict[str, tuple[str, ...]] = {
    "Pneumonia": (r"pneumonias?", r"bronchopneumonias?", r"pneumonic"),
    "Pneumothorax": (r"pneumothora(?:x|ces|xes)", r"hydropneumothora(?:x|ces)", r"ptx"),
    "Pleural Effusion": (r"(?:pleural )?effusions?", r"pleural fluid(?: collections?)?", r"hydrothorax",
                         r"blunt(?:ing|ed)", r"fluid(?=(?: [a-z]+){0,4} (?:pleural|pleura)\b)"),
    "Lung Opacity": (r"(?:lung )?opacit(?:y|ies)", r"opacifications?", r"opacified", r"infiltrates?",
                     r"infiltration", r"air[\s-]?space (?:disease|process|opacit(?:y|ies))"),
    "Atelectasis": (r"atelectas[ie]s", r"atelectatic", r"collapsed?", r"volume loss"),
    "Cardiomegaly": (),  # all of mentions.py's forms (they name nothing else)
    "Consolidation": (r"consolidations?", r"consolidative", r"consolidated"),
    "Edema": (),  # all of mentions.py's forms
}
# An adjective of one finding in front of another finding's noun names the finding: "consolidative opacity".
_ADJECTIVES = frozenset({"pneumonic", "consolidative", "consolidated", "atelectatic"})
# A finding explained by a later one is that one: "opacity concerning for pneumonia".
_EXPLAINS = re.compile(r"\b(?:likely|probably|possibly|concerning|suspicious|consistent|compatible|"
                       r"suggest\w*|represent\w*|reflect\w*|worrisome|due to|secondary to|favou?r\w*|"
                       r"may be|could be)\b")
_GUARD = {"Pleural Effusion": r"(?<!pericardial )(?<!joint )", "Edema": r"(?<!soft tissue )(?<!subcutaneous )"
                                                                       r"(?<!tissue )(?<!wall )"}
# Effusions and pneumothoraces in the plural with no side are one on each side (each pleural space holds
# one); plural opacities may all lie in one lung, so they get no such rule.
_BOTH_SIDES_IF_PLURAL = {"Pleural Effusion": re.compile(r"\beffusions\b"),
                         "Pneumothorax": re.compile(r"\bpneumothora(?:ces|xes)\b")}
# Edema named by its kind only is in both lungs: "interstitial edema" -> pulmonary.
_DIFFUSE_EDEMA = re.compile(r"\b(?:interstitial|alveolar)\b")


@cache
def _head_pattern(pathology: str) -> re.Pattern[str]:
    forms = _HEADS[pathology]
    if not forms:
        return mention_pattern(pathology)
    body = "|".join(sorted(forms, key=len, reverse=True))
    return re.compile(rf"\b{_GUARD.get(pathology, '')}(?:{body})\b")


@dataclass(frozen=True)
class _Head:
    pathology: str
    start: int
    end: int
    text: str


def _heads(norm: str) -> list[_Head]:
    """Finding words in the phrase, in order, not overlapping (longest first)."""
    found: list[_Head] = []
    for pathology in PATHOLOGIES:
        for match in _head_pattern(pathology).finditer(norm):
            found.append(_Head(pathology, match.start(), match.end(), match.group(0)))
    found.sort(key=lambda h: (h.start, -(h.end - h.start)))
    kept: list[_Head] = []
    for head in found:
        if kept and head.start < kept[-1].end:
            continue
        kept.append(head)
    return kept


def _status(analysis: Analysis, head: _Head) -> str:
    """present / negated / resolved / uncertain of the finding word, by the curation's cues."""
    for k in analysis.targets:
        mention = analysis.mentions[k]
        first, last = analysis.toks[mention.start].start, analysis.toks[mention.end - 1].end
        if first < head.end and head.start < last:
            return analysis.status[k]
    return PRESENT


def _choose(norm: str, shown: str) -> str:
    """The one finding a phrase is about (see the module docstring), or InputError."""
    heads = _heads(norm)
    if not heads:
        raise _refuse(shown, "it names none of the 8 findings")
    # an adjective in front of another finding's word names the finding ("consolidative opacity")
    merged: list[_Head] = []
    for head in heads:
        if merged and merged[-1].text in _ADJECTIVES and not norm[merged[-1].end:head.start].strip():
            continue
        merged.append(head)
    analyses = {p: analyse(norm, p) for p in dict.fromkeys(h.pathology for h in merged)}
    states = [(head, _status(analyses[head.pathology], head)) for head in merged]
    present = [(h, s) for h, s in states if s in (PRESENT, UNCERTAIN)]
    if not present:
        state = states[0][1]
        word = {NEGATED: "negates", RESOLVED: "says it has resolved"}.get(state, "does not assert")
        raise _refuse(shown, f"it {word} its finding ({states[0][0].text!r})")
    pathologies = list(dict.fromkeys(h.pathology for h, _ in present))
    if len(pathologies) == 1:
        return pathologies[0]
    # a finding explained by a later one is that one: "left basilar opacity, likely atelectasis"
    last = present[-1][0]
    between = norm[present[-2][0].end:last.start]
    if len(pathologies) == 2 and _EXPLAINS.search(between):
        return last.pathology
    raise _refuse(shown, f"it names {len(pathologies)} findings ({', '.join(pathologies)}); "
                         "give one finding per prompt")


def _check_negations(shown: str, analysis: Analysis) -> None:
    """A negation word must negate another finding ("pneumonia without effusion") or be a pseudo-negation
    ("no change in the left effusion"); otherwise what it negates is unclear and the phrase is refused."""
    from cxrg.curation.mentions import _pseudo

    toks, clauses, found = analysis.toks, analysis.clauses, analysis.mentions
    for k, tok in enumerate(toks):
        if tok.text not in NEGATIONS or _pseudo(toks, k):
            continue
        if tok.text == "not" and any(t.text in ("exclude", "excluded") for t in toks[k + 1:k + 3]):
            continue  # "not excluded", "not be excluded": a hedge
        negated_other = any(not m.target and m.start > k and clauses[m.start] == clauses[k]
                            and assertion(toks, clauses, m, found) == NEGATED for m in found)
        if not negated_other:
            raise _refuse(shown, f"{tok.text!r} does not say which finding it negates; write the finding "
                                 "that is present only")


def _free_text(text: str, pathology: str | None, style: str, shown: str) -> Prompt:
    norm = lower_text(" ".join(text.split()))
    if style == "paper":  # the paper: "pleural" of "pleural effusion" is the finding's name, not a place
        norm = re.sub(r"\bpleural (?=effusions?\b)", "", norm)
    if pathology is None:
        pathology = _choose(norm, shown)
    analysis = analyse(norm, pathology)
    if analysis.targets and analysis.verdict() in (NEGATED, RESOLVED):
        raise _refuse(shown, f"it says the finding is {analysis.verdict()}")
    _check_negations(shown, analysis)
    locations = rule_locations(analysis) if analysis.present else ()
    if not locations and not [m for m in analysis.mentions if not m.target]:
        locations = rule_locations(analysis, whole=True)  # "right lower lobe airspace process"
    if pathology == "Edema" and not locations and _DIFFUSE_EDEMA.search(norm):
        locations = ("pulmonary",)
    if pathology in _BOTH_SIDES_IF_PLURAL and not locations and _BOTH_SIDES_IF_PLURAL[pathology].search(norm):
        locations = ("bilateral",)  # "small pleural effusions": one in each pleural space
    return canonical(Prompt(locations, pathology), style)


def normalise(text: str, exact: bool = False, *, pathology: str | None = None,
              style: str = "cxrg") -> NormalisedPhrase:
    """The canonical prompt for a phrase (see the module docstring).

    `exact`: accept only vocabulary prompts, as written (`Prompt.parse`), no reading.
    `pathology`: the finding, when the caller knows it (e.g. MS-CXR's `category_name`); the phrase then
    only gives the locations.
    `style`: "cxrg" (default) or "paper", the prompt forms of `cxrg.vocab.canonical` (docs/curation.md,
    "Prompt styles").
    """
    phrase = str(text)
    if style not in STYLES:
        raise InputError(f"unknown prompt style {style!r}", hint=f"choose one of: {', '.join(STYLES)}")
    if not phrase.strip():
        raise InputError("empty phrase", hint="write a finding, e.g. 'left lower lobe pneumonia'")
    if exact:
        try:
            structured = Prompt.parse(phrase)
        except InputError as exc:
            raise InputError(f"{exc.what} (exact prompt)", where=exc.where,
                             hint=_suggestion(phrase) + "; or drop the exact-prompt option to read free "
                                                        "text") from None
        if pathology is not None and structured.pathology != canonical_pathology(pathology):
            raise InputError(f"prompt {phrase!r} is about {structured.pathology}, not {pathology}")
        return NormalisedPhrase(phrase, structured.format(), structured, style=style)
    wanted = canonical_pathology(pathology) if pathology is not None else None
    reading = _read_words(phrase)
    try:
        parsed: Prompt | None = Prompt.parse(reading.text)
    except InputError:
        parsed = None
    if parsed is not None and (wanted is None or parsed.pathology == wanted):
        structured = canonical(parsed, style)
    else:
        structured = _free_text(reading.text, wanted, style, phrase)
    return NormalisedPhrase(phrase, structured.format(), structured, reading.corrections, style)


@cache
def vocabulary_prompts() -> tuple[str, ...]:
    """Every canonical prompt with at most one location (the candidates for suggestions)."""
    out: list[str] = []
    for pathology in PATHOLOGIES:
        for locations in ((), *((loc,) for loc in LOCATIONS)):
            text = canonical(Prompt(locations, pathology)).format()
            if text not in out:
                out.append(text)
    return tuple(out)


def closest_prompts(text: str, n: int = 3) -> list[str]:
    """The vocabulary prompts closest to `text` (difflib), best first."""
    norm = " ".join(str(text).lower().split())[:200]
    return difflib.get_close_matches(norm, vocabulary_prompts(), n=n, cutoff=0.0)


def _suggestion(text: str) -> str:
    return "closest vocabulary prompts: " + ", ".join(repr(p) for p in closest_prompts(text))
