"""A labelled set of report sentences with the prompt each should give, and the extractor score on it.

Written for cxrg (not taken from any dataset) in the phrasing of MIMIC-CXR and IU reports: all 8
pathologies; plurals, synonyms and laterality variants; locations before and after the finding
(including what RadGraph-XL is documented to miss); negated, resolved and uncertain mentions; sentences
that name the finding without a usable location. `expected` is the prompt, or None with the reason the
sentence gives no sample.

Conventions the expectations follow (docs/curation.md): the word "pleural" of "pleural effusion" is a
location ("left pleural effusion" -> "left pleural pleural effusion"), and an effusion named by its side
only is in that side's pleural space too ("small left effusion" -> "left pleural pleural effusion");
cardiomegaly is always located at "cardiomegaly" (prompt "cardiomegaly"); for edema, "pulmonary", "lungs"
and a side-less "bilateral" give "pulmonary"; a zone without a side ("apical pneumothorax") is no location.
Predictions are scored as curation writes them (`cxrg.vocab.canonical`).

Score: per sentence, the predicted and expected location sets are compared; true positives are shared
locations, false positives predicted ones not expected (every location predicted for a sentence that
should give none is one), false negatives expected ones not predicted. Precision and recall are
micro-averaged over all sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cxrg.vocab import Prompt


@dataclass(frozen=True)
class Gold:
    pathology: str
    sentence: str
    expected: str | None
    """The prompt, or None when the sentence gives no sample."""
    reason: str = ""
    """Why no sample: "negated", "resolved", "uncertain", "no location", "no mention"."""


def _g(pathology: str, sentence: str, expected: str | None, reason: str = "") -> Gold:
    if expected is None and not reason:
        reason = "no location"
    return Gold(pathology, sentence, expected, reason)


PTX, PE, PNA, OPA = "Pneumothorax", "Pleural Effusion", "Pneumonia", "Lung Opacity"
ATL, CMG, CON, EDE = "Atelectasis", "Cardiomegaly", "Consolidation", "Edema"

GOLD: tuple[Gold, ...] = (
    # --- pneumothorax ---
    _g(PTX, "Left pneumothorax.", "left pneumothorax"),
    _g(PTX, "Right pneumothorax.", "right pneumothorax"),
    _g(PTX, "Small right apical pneumothorax.", "right apical pneumothorax"),
    _g(PTX, "There is a tiny left apical pneumothorax.", "left apical pneumothorax"),
    _g(PTX, "Trace pneumothorax on the left.", "left pneumothorax"),
    _g(PTX, "Moderate right-sided pneumothorax is again seen.", "right pneumothorax"),
    _g(PTX, "Small bilateral pneumothoraces.", "bilateral pneumothorax"),
    _g(PTX, "Interval increase in the size of the right pneumothorax.", "right pneumothorax"),
    _g(PTX, "A small left basilar pneumothorax is present.", "left base pneumothorax"),
    _g(PTX, "Right chest tube in place with a small residual right apical pneumothorax.",
       "right apical pneumothorax"),
    _g(PTX, "Pneumothorax at the right apex measures 1 cm.", "right apical pneumothorax"),
    _g(PTX, "Left-sided pneumothorax with mediastinal shift to the right.", "left pneumothorax"),
    _g(PTX, "Tiny residual pneumothorax at the left lung base.", "left base pneumothorax"),
    _g(PTX, "There is a moderate-sized right pneumothorax, slightly larger than before.",
       "right pneumothorax"),
    _g(PTX, "Stable small left apical pneumothorax after chest tube removal.", "left apical pneumothorax"),
    _g(PTX, "Bilateral apical pneumothoraces are unchanged.", "bilateral apical pneumothorax"),
    _g(PTX, "A small pneumothorax is present on the right.", "right pneumothorax"),
    _g(PTX, "Hydropneumothorax in the right hemithorax.", "right pneumothorax"),
    _g(PTX, "Left apical pneumothorax is slightly smaller.", "left apical pneumothorax"),
    _g(PTX, "Right PICC line terminates in the SVC; there is a small left apical pneumothorax.",
       "left apical pneumothorax"),
    _g(PTX, "No pneumothorax on the right; small left apical pneumothorax persists.",
       "left apical pneumothorax"),
    _g(PTX, "No pneumothorax.", None, "negated"),
    _g(PTX, "There is no evidence of pneumothorax.", None, "negated"),
    _g(PTX, "The previously seen left pneumothorax has resolved.", None, "resolved"),
    _g(PTX, "Left apical pneumothorax is no longer visualized.", None, "resolved"),
    _g(PTX, "Pneumothorax is not seen.", None, "negated"),
    _g(PTX, "Left chest tube is in place, and there is no pneumothorax.", None, "negated"),
    _g(PTX, "Small apical pneumothorax.", None),
    _g(PTX, "Apical pneumothorax on the right is smaller.", "right apical pneumothorax"),
    # --- pleural effusion ---
    _g(PE, "Small left pleural effusion.", "left pleural pleural effusion"),
    _g(PE, "Moderate right pleural effusion.", "right pleural pleural effusion"),
    _g(PE, "Small bilateral pleural effusions.", "bilateral pleural pleural effusion"),
    _g(PE, "Small pleural effusions are present bilaterally.", "bilateral pleural pleural effusion"),
    _g(PE, "Small pleural effusion is now present on the right.", "right pleural pleural effusion"),
    _g(PE, "Small left effusion.", "left pleural pleural effusion"),
    _g(PE, "Layering right effusion is unchanged.", "right pleural pleural effusion"),
    _g(PE, "Blunting of the left costophrenic angle likely reflects a small effusion.",
       "left costophrenic pleural effusion"),
    _g(PE, "Blunting of the right costophrenic angle.", "right costophrenic pleural effusion"),
    _g(PE, "Bilateral effusions, right greater than left.", "bilateral pleural pleural effusion"),
    _g(PE, "Effusions at both lung bases.", "bibasilar pleural effusion"),
    _g(PE, "There is a small right-sided pleural effusion with adjacent atelectasis.",
       "right pleural pleural effusion"),
    _g(PE, "Moderate left pleural effusion with associated compressive atelectasis.",
       "left pleural pleural effusion"),
    _g(PE, "Small bilateral pleural effusions, left greater than right, are unchanged.",
       "bilateral pleural pleural effusion"),
    _g(PE, "Possible small left pleural effusion.", "left pleural pleural effusion"),
    _g(PE, "Left lower lobe consolidation and small right pleural effusion.",
       "right pleural pleural effusion"),
    _g(PE, "Right pleural effusion and no pneumothorax.", "right pleural pleural effusion"),
    _g(PE, "No change in the small left pleural effusion.", "left pleural pleural effusion"),
    _g(PE, "Pleural effusion at the right base.", "right base pleural effusion"),
    _g(PE, "Moderate to large left pleural effusion has increased.", "left pleural pleural effusion"),
    _g(PE, "Small effusion on the left and trace effusion on the right.",
       "bilateral pleural pleural effusion"),
    _g(PE, "Stable moderate left subpulmonic effusion.", "left pleural pleural effusion"),
    _g(PE, "Moderate cardiomegaly with small bilateral pleural effusions and mild pulmonary edema.",
       "bilateral pleural pleural effusion"),
    _g(PE, "Left chest tube in place with decreased left pleural effusion.", "left pleural pleural effusion"),
    _g(PE, "Right lower lobe atelectasis with a small left pleural effusion.",
       "left pleural pleural effusion"),
    _g(PE, "Small left effusion; the right lung is clear.", "left pleural pleural effusion"),
    _g(PE, "No right effusion; small left pleural effusion is unchanged.", "left pleural pleural effusion"),
    _g(PE, "Left lower lobe opacity, without pleural effusion.", None, "negated"),
    _g(PE, "No pleural effusion.", None, "negated"),
    _g(PE, "No pleural effusion or pneumothorax is seen.", None, "negated"),
    _g(PE, "The lungs are clear without effusion.", None, "negated"),
    _g(PE, "The previously noted left pleural effusion has resolved.", None, "resolved"),
    _g(PE, "Interval resolution of the right pleural effusion.", None, "resolved"),
    _g(PE, "Right effusion has cleared.", None, "resolved"),
    _g(PE, "Small pleural effusion.", None),
    _g(PE, "Small pleural effusions.", None),
    _g(PE, "Fluid is seen layering in the right pleural space.", "right pleural pleural effusion"),
    _g(PE, "Pericardial effusion is suspected.", None, "no mention"),
    # --- pneumonia ---
    _g(PNA, "Right lower lobe pneumonia.", "right lower pneumonia"),
    _g(PNA, "Consolidation at both lung bases.", "bibasilar pneumonia"),
    _g(PNA, "Left lower lobe opacity concerning for pneumonia.", "left lower pneumonia"),
    _g(PNA, "Patchy opacity in the right middle lobe, which may represent pneumonia.",
       "right middle pneumonia"),
    _g(PNA, "Increased opacity at the left base, concerning for pneumonia.", "left base pneumonia"),
    _g(PNA, "New right upper lobe consolidation.", "right upper pneumonia"),
    _g(PNA, "Retrocardiac opacity may reflect pneumonia or atelectasis.", "left lower pneumonia"),
    _g(PNA, "Left lingular pneumonia.", "lingular pneumonia"),
    _g(PNA, "Opacities in the right lower lobe and lingula are concerning for pneumonia.",
       "right lower and lingular pneumonia"),
    _g(PNA, "Pneumonia in the left upper lobe has improved.", "left upper pneumonia"),
    _g(PNA, "Bilateral lower lobe infiltrates consistent with pneumonia.", "bilateral lower pneumonia"),
    _g(PNA, "Airspace disease in the right lower lobe is compatible with pneumonia.",
       "right lower pneumonia"),
    _g(PNA, "Patchy bibasilar opacities may reflect aspiration or pneumonia.", "bibasilar pneumonia"),
    _g(PNA, "Right perihilar opacity, possibly pneumonia.", "right pneumonia"),
    _g(PNA, "Multifocal pneumonia involving the right upper and left lower lobes.",
       "right upper and left lower pneumonia"),
    _g(PNA, "There is a new consolidation in the left mid lung.", "left middle pneumonia"),
    _g(PNA, "Pneumonia in the right lung base.", "right base pneumonia"),
    _g(PNA, "Opacity in the right apex is unchanged.", "right apical pneumonia"),
    _g(PNA, "Consolidation in the lingula and left lower lobe.", "lingular and left lower pneumonia"),
    _g(PNA, "Left pleural effusion and right lower lobe pneumonia.", "right lower pneumonia"),
    _g(PNA, "Right upper lobe pneumonia, with no effusion.", "right upper pneumonia"),
    _g(PNA, "Findings are consistent with multifocal pneumonia.", None),
    _g(PNA, "Patchy opacity, possibly pneumonia.", None),
    _g(PNA, "No focal consolidation to suggest pneumonia.", None, "negated"),
    _g(PNA, "Resolution of the previously seen right lower lobe pneumonia.", None, "resolved"),
    _g(PNA, "Left basilar pneumonia has cleared.", None, "resolved"),
    _g(PNA, "Pneumonia cannot be excluded.", None, "uncertain"),
    _g(PNA, "No evidence of pneumonia.", None, "negated"),
    # --- lung opacity ---
    _g(OPA, "Patchy perihilar opacities bilaterally.", "bilateral lung opacity"),
    _g(OPA, "Hazy opacity at the right lung base.", "right base lung opacity"),
    _g(OPA, "Left retrocardiac opacity.", "left lower lung opacity"),
    _g(OPA, "Increased opacification of the left hemithorax.", "left lung opacity"),
    _g(OPA, "Bibasilar opacities are again seen.", "bibasilar lung opacity"),
    _g(OPA, "Opacity in the left upper lobe is unchanged.", "left upper lung opacity"),
    _g(OPA, "Streaky opacities in the lung bases.", "bibasilar lung opacity"),
    _g(OPA, "There is a new opacity in the right mid lung zone.", "right middle lung opacity"),
    _g(OPA, "Right upper lobe and left apical opacities.", "right upper and left apical lung opacity"),
    _g(OPA, "Diffuse bilateral opacities.", "bilateral lung opacity"),
    _g(OPA, "Opacities in both upper lobes.", "bilateral upper lung opacity"),
    _g(OPA, "Ill-defined opacity projecting over the left costophrenic angle.",
       "left costophrenic lung opacity"),
    _g(OPA, "Opacity at the right apex.", "right apical lung opacity"),
    _g(OPA, "Opacities in the left lower lung and right lower lung are similar.",
       "bilateral lower lung opacity"),
    _g(OPA, "A rounded opacity in the right lower lobe.", "right lower lung opacity"),
    _g(OPA, "Interstitial opacities are most pronounced at the bases.", "bibasilar lung opacity"),
    _g(OPA, "Infiltrate in the left lower lobe.", "left lower lung opacity"),
    _g(OPA, "Opacification of the right lower lung is improved.", "right lower lung opacity"),
    _g(OPA, "Subtle opacity in the lingula.", "lingular lung opacity"),
    _g(OPA, "Opacities throughout both lungs.", "bilateral lung opacity"),
    _g(OPA, "There is airspace disease in the right lower lobe.", "right lower lung opacity"),
    _g(OPA, "Left lower lobe opacity, without pleural effusion.", "left lower lung opacity"),
    _g(OPA, "Elevated right hemidiaphragm with adjacent opacity.", "right lung opacity"),
    _g(OPA, "Ill-defined opacity in the region of the right hilum is unchanged.", "right lung opacity"),
    _g(OPA, "Patchy infiltrate within an otherwise normal right lower lobe.", "right lower lung opacity"),
    _g(OPA, "Patchy bibasilar airspace opacities, right greater than left.", "bibasilar lung opacity"),
    _g(OPA, "Hyperinflated lungs and streaky opacities.", None),
    _g(OPA, "Streaky perihilar opacities.", None),
    _g(OPA, "No focal opacities.", None, "negated"),
    _g(OPA, "Previously seen right upper lobe opacity has resolved.", None, "resolved"),
    _g(OPA, "The lungs are clear without focal opacity.", None, "negated"),
    # --- atelectasis ---
    _g(ATL, "Bibasilar atelectasis.", "bibasilar atelectasis"),
    _g(ATL, "Left basilar atelectasis.", "left base atelectasis"),
    _g(ATL, "Mild right lower lobe atelectasis.", "right lower atelectasis"),
    _g(ATL, "Subsegmental atelectasis at the left base.", "left base atelectasis"),
    _g(ATL, "Plate-like atelectasis in the right mid lung.", "right middle atelectasis"),
    _g(ATL, "Linear atelectasis at both lung bases.", "bibasilar atelectasis"),
    _g(ATL, "Streaky opacities at the lung bases likely reflect atelectasis.", "bibasilar atelectasis"),
    _g(ATL, "Left lower lobe collapse.", "left lower atelectasis"),
    _g(ATL, "Retrocardiac atelectasis.", "left lower atelectasis"),
    _g(ATL, "Minimal atelectasis in the lingula.", "lingular atelectasis"),
    _g(ATL, "Mild bibasilar atelectatic changes.", "bibasilar atelectasis"),
    _g(ATL, "Right middle lobe atelectasis is unchanged.", "right middle atelectasis"),
    _g(ATL, "Atelectasis at the right base and in the left lower lobe.",
       "right base and left lower atelectasis"),
    _g(ATL, "Compressive atelectasis adjacent to the left pleural effusion.", "left atelectasis"),
    _g(ATL, "Small left pleural effusion with adjacent atelectasis.", "left atelectasis"),
    _g(ATL, "Atelectasis in the left upper lobe.", "left upper atelectasis"),
    _g(ATL, "Bilateral lower lobe atelectasis.", "bilateral lower atelectasis"),
    _g(ATL, "Patchy atelectasis is seen in the right lung base.", "right base atelectasis"),
    _g(ATL, "Discoid atelectasis in the left mid and lower lung.", "left middle and left lower atelectasis"),
    _g(ATL, "Atelectasis is present in both lower lobes.", "bilateral lower atelectasis"),
    _g(ATL, "Persistent left lower lobe volume loss.", "left lower atelectasis"),
    _g(ATL, "Atelectasis at the lung bases is improved.", "bibasilar atelectasis"),
    _g(ATL, "Opacity behind the heart likely reflects atelectasis.", "left lower atelectasis"),
    _g(ATL, "Left basilar opacity, likely atelectasis.", "left base atelectasis"),
    _g(ATL, "Atelectasis and effusion at the left base.", "left base atelectasis"),
    _g(ATL, "Right lower lobe atelectasis with a small left pleural effusion.", "right lower atelectasis"),
    _g(ATL, "Cardiomegaly with left lower lobe atelectasis.", "left lower atelectasis"),
    _g(ATL, "Streaky densities at the left base likely reflect atelectasis.", "left base atelectasis"),
    _g(ATL, "Right upper lobe scarring/atelectasis.", "right upper atelectasis"),
    _g(ATL, "Atelectasis or scarring at the left base.", "left base atelectasis"),
    _g(ATL, "No atelectasis.", None, "negated"),
    _g(ATL, "Atelectasis has resolved.", None, "resolved"),
    _g(ATL, "No significant atelectasis is seen.", None, "negated"),
    _g(ATL, "Atelectasis.", None),
    _g(ATL, "Minimal basilar atelectasis.", None),
    # --- cardiomegaly ---
    _g(CMG, "Cardiomegaly.", "cardiomegaly"),
    _g(CMG, "Mild cardiomegaly is stable.", "cardiomegaly"),
    _g(CMG, "The heart is mildly enlarged.", "cardiomegaly"),
    _g(CMG, "Moderate enlargement of the cardiac silhouette.", "cardiomegaly"),
    _g(CMG, "Heart size is enlarged.", "cardiomegaly"),
    _g(CMG, "The cardiac silhouette is enlarged.", "cardiomegaly"),
    _g(CMG, "Stable moderate cardiomegaly with mild pulmonary vascular congestion.",
       "cardiomegaly"),
    _g(CMG, "The heart remains enlarged.", "cardiomegaly"),
    _g(CMG, "Enlarged cardiac silhouette.", "cardiomegaly"),
    _g(CMG, "Marked cardiomegaly is unchanged.", "cardiomegaly"),
    _g(CMG, "Borderline cardiomegaly.", "cardiomegaly"),
    _g(CMG, "Cardiomegaly with left lower lobe atelectasis.", "cardiomegaly"),
    _g(CMG, "No cardiomegaly.", None, "negated"),
    _g(CMG, "Cardiomegaly is not present.", None, "negated"),
    _g(CMG, "Previously seen cardiomegaly is no longer present.", None, "resolved"),
    _g(CMG, "Heart size is normal.", None, "no mention"),
    # --- consolidation ---
    _g(CON, "Right lower lobe consolidation.", "right lower consolidation"),
    _g(CON, "Consolidation at both lung bases.", "bibasilar consolidation"),
    _g(CON, "Left lower lobe consolidation is worse.", "left lower consolidation"),
    _g(CON, "Dense consolidation in the right upper lobe.", "right upper consolidation"),
    _g(CON, "Consolidative opacity in the left lower lobe.", "left lower consolidation"),
    _g(CON, "Focal consolidation at the right base.", "right base consolidation"),
    _g(CON, "Bilateral lower lobe consolidations.", "bilateral lower consolidation"),
    _g(CON, "Consolidation in the lingula.", "lingular consolidation"),
    _g(CON, "Right middle lobe consolidation, likely pneumonia.", "right middle consolidation"),
    _g(CON, "Patchy consolidation in the left mid and lower lung zones.",
       "left middle and left lower consolidation"),
    _g(CON, "Retrocardiac consolidation.", "left lower consolidation"),
    _g(CON, "Consolidation of the right lung base is unchanged.", "right base consolidation"),
    _g(CON, "Multifocal consolidations in both lungs.", "bilateral consolidation"),
    _g(CON, "Consolidation in the right upper lobe and left lower lobe.",
       "right upper and left lower consolidation"),
    _g(CON, "Consolidation is seen in the left upper lobe.", "left upper consolidation"),
    _g(CON, "Left pleural effusion with adjacent consolidation in the left lower lobe.",
       "left lower consolidation"),
    _g(CON, "No focal consolidation.", None, "negated"),
    _g(CON, "There is no focal consolidation, pleural effusion or pneumothorax.", None, "negated"),
    _g(CON, "Left lower lobe consolidation has resolved.", None, "resolved"),
    _g(CON, "Consolidation in the left lower lobe has cleared.", None, "resolved"),
    _g(CON, "Lungs are without consolidation.", None, "negated"),
    _g(CON, "Consolidation.", None),
    _g(CON, "Patchy consolidation is again seen.", None),
    # --- edema ---
    _g(EDE, "Mild pulmonary edema.", "pulmonary edema"),
    _g(EDE, "Moderate pulmonary edema has increased.", "pulmonary edema"),
    _g(EDE, "Bilateral perihilar edema.", "pulmonary edema"),
    _g(EDE, "Edema in both lungs.", "pulmonary edema"),
    _g(EDE, "Mild pulmonary vascular congestion.", "pulmonary edema"),
    _g(EDE, "Interval improvement in pulmonary edema.", "pulmonary edema"),
    _g(EDE, "Diffuse bilateral airspace opacities consistent with pulmonary edema.", "pulmonary edema"),
    _g(EDE, "Mild interstitial pulmonary edema.", "pulmonary edema"),
    _g(EDE, "Mild edema at the lung bases.", "bibasilar edema"),
    _g(EDE, "Moderate bilateral pulmonary edema.", "pulmonary edema"),
    _g(EDE, "Pulmonary edema is unchanged.", "pulmonary edema"),
    _g(EDE, "Worsening pulmonary edema with bilateral effusions.", "pulmonary edema"),
    _g(EDE, "Asymmetric edema in the right lung.", "right edema"),
    _g(EDE, "Mild pulmonary edema and a small right pleural effusion.", "pulmonary edema"),
    _g(EDE, "Findings suggest mild interstitial edema in both lungs.", "pulmonary edema"),
    _g(EDE, "Mild interstitial edema.", None),
    _g(EDE, "Vascular congestion and mild edema.", None),
    _g(EDE, "Mild perihilar edema.", None),
    _g(EDE, "No pulmonary edema.", None, "negated"),
    _g(EDE, "Pulmonary edema has resolved.", None, "resolved"),
    _g(EDE, "No evidence of pulmonary vascular congestion.", None, "negated"),
    _g(EDE, "Pulmonary edema has cleared.", None, "resolved"),
)


@dataclass
class Score:
    precision: float
    recall: float
    exact: float
    """Share of sentences whose prompt (or no-sample verdict) is exactly the expected one."""
    sentences: int
    tp: int
    fp: int
    fn: int
    errors: list[tuple[Gold, str | None]] = field(default_factory=list)
    """(gold, predicted prompt) for every sentence that was not exact."""

    def lines(self) -> list[str]:
        out = [f"{self.sentences} sentences: precision {self.precision:.3f}, recall {self.recall:.3f}, "
               f"exact {self.exact:.3f} (TP {self.tp}, FP {self.fp}, FN {self.fn})"]
        for gold, predicted in self.errors:
            out.append(f"  [{gold.pathology}] {gold.sentence!r}: expected {gold.expected or gold.reason!r}, "
                       f"got {predicted!r}")
        return out


def score(predict: Callable[[str, str], tuple[str, ...] | None], gold: tuple[Gold, ...] = GOLD) -> Score:
    """Score `predict(sentence, pathology) -> locations or None (no sample)` on the gold set."""
    tp = fp = fn = exact = 0
    errors: list[tuple[Gold, str | None]] = []
    for item in gold:
        expected = set(Prompt.parse(item.expected).locations) if item.expected else set()
        got = predict(item.sentence, item.pathology) or ()
        predicted = set(got)
        tp += len(expected & predicted)
        fp += len(predicted - expected)
        fn += len(expected - predicted)
        prompt = Prompt(tuple(got), item.pathology).format() if got else None
        if prompt == item.expected:
            exact += 1
        else:
            errors.append((item, prompt))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return Score(precision, recall, exact / len(gold), len(gold), tp, fp, fn, errors)


def score_extractor(extractor: object) -> Score:
    """Score an extractor through the pipeline's own filter (negation, resolution) on the gold set."""
    from cxrg.curation.pipeline import curate_sentence

    def predict(sentence: str, pathology: str) -> tuple[str, ...]:
        return curate_sentence(sentence, pathology, extractor)[1]  # type: ignore[arg-type]

    return score(predict)
