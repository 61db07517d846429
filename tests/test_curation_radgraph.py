"""The RadGraph-XL extractor: entity grouping on hand-written annotations, and the real `radgraph` loading
and inference path on a tiny checkpoint this test builds in the package's own layout (skipped when the
optional `radgraph` package is not installed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrg.curation.extractors import SentenceQuery, make_extractor
from cxrg.curation.radgraph import anatomy_phrases, locations_from_annotation
from cxrg.errors import MissingWeightsError

ANAT, OBS = "Anatomy::definitely present", "Observation::definitely present"


def entity(tokens: str, label: str, start: int, relations: list | None = None) -> dict:
    return {"tokens": tokens, "label": label, "start_ix": start, "end_ix": start + len(tokens.split()) - 1,
            "relations": relations or []}


def test_anatomy_entities_are_grouped_by_contiguity_and_modify_relations():
    # "opacity in the left lower lobe , and in the right apex", RadGraph style: one entity per word
    annotation = {"entities": {
        "1": entity("opacity", OBS, 0, [["located_at", "4"]]),
        "2": entity("left", ANAT, 3, [["modify", "4"]]),
        "3": entity("lower", ANAT, 4, [["modify", "4"]]),
        "4": entity("lobe", ANAT, 5),
        "5": entity("right", ANAT, 10, [["modify", "6"]]),
        "6": entity("apex", ANAT, 11),
        "7": entity("lungs", "Anatomy::definitely absent", 14),
    }}
    assert anatomy_phrases(annotation) == ["left lower lobe", "right apex"]
    assert anatomy_phrases(annotation, linked_to="Lung Opacity") == ["left lower lobe"]   # located_at
    assert locations_from_annotation(annotation, "Lung Opacity") == ("left lower",)
    unlinked = {"entities": {k: {**e, "relations": [r for r in e["relations"] if r[0] != "located_at"]}
                             for k, e in annotation["entities"].items()}}
    assert locations_from_annotation(unlinked, "Lung Opacity") == ("left lower", "right apical")
    # a modifier far from its head still joins it: "lobe ... left" via modify
    far = {"entities": {"1": entity("lobe", ANAT, 2), "2": entity("left", ANAT, 6, [["modify", "1"]]),
                        "3": entity("lower", ANAT, 1, [["modify", "1"]])}}
    assert anatomy_phrases(far) == ["lower lobe left"]
    assert locations_from_annotation(far, "Atelectasis") == ("left lower",)
    assert locations_from_annotation({"entities": {"1": entity("heart", ANAT, 1)}}, "Cardiomegaly") == \
        ("cardiomegaly",)
    assert locations_from_annotation({}, "Edema") == ()


def test_radgraph_extractor_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        make_extractor("radgraph", radgraph_dir=tmp_path)
    assert "--extractor radgraph needs RadGraph-XL" in str(err.value)
    assert "--extractor rules" in str(err.value)


# --- a tiny RadGraph-XL checkpoint in the real layout ---------------------------------------------------

ANATOMY_WORDS = ["left", "right", "lower", "upper", "lobe", "base", "apical", "pleural", "lung", "lungs",
                 "bases", "both", "bilateral"]
OTHER_WORDS = ["pneumothorax", "effusion", "consolidation", "opacity", "cardiomegaly", "mild", "small",
               "trace", "on", "the", "at", "is", "there", "a", "."]


def build_tiny_radgraph_xl(root: Path) -> Path:
    """<root>/radgraph-xl/{config.json, vocabulary/, weights.th} with a 1-layer BERT in <root>/tiny-bert.

    The weights are set, not trained, so that the model is predictable: BERT passes each word's embedding
    through unchanged (attention and feed-forward outputs are zero), anatomy words have a positive first
    component, and the NER head labels a one-word span "Anatomy::definitely present" exactly when that
    component is positive. Relation scores are very negative: no relations.
    """
    import torch
    from dotmap import DotMap
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertConfig, BertModel, BertTokenizer

    bert = root / "tiny-bert"
    bert.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ANATOMY_WORDS, *OTHER_WORDS]
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(bert / "vocab.txt"), do_lower_case=True).save_pretrained(bert)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8, max_position_embeddings=64)).save_pretrained(bert)

    folder = root / "radgraph-xl"
    vocabulary = folder / "vocabulary"
    vocabulary.mkdir(parents=True)
    (vocabulary / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    ner_labels = ["", ANAT, "Anatomy::definitely absent", OBS, "Observation::definitely absent",
                  "Observation::uncertain"]  # "" first: the null label has index 0
    (vocabulary / "radgraph-xl__ner_labels.txt").write_text("\n".join(ner_labels) + "\n")
    (vocabulary / "radgraph-xl__relation_labels.txt").write_text("modify\nlocated_at\nsuggestive_of\n")
    bert_settings = {"type": "pretrained_transformer_mismatched", "max_length": 512, "model_name": str(bert)}
    config = {
        "dataset_reader": {"type": "dygie", "max_span_width": 1, "token_indexers": {"bert": bert_settings}},
        "model": {
            "type": "dygie", "embedder": {"token_embedders": {"bert": bert_settings}},
            "feature_size": 4, "max_span_width": 1, "target_task": "relation",
            "feedforward_params": {"num_layers": 1, "hidden_dims": 4, "dropout": 0.0},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {"ner": {}, "relation": {"spans_per_word": 0.5},
                        "coref": {"spans_per_word": 0.3, "max_antecedents": 10, "coref_prop": 0},
                        "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.3,
                                   "loss_weights": {"trigger": 1.0, "arguments": 0.5}}},
            "initializer": {}, "module_initializer": {},
        },
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))

    # The DyGIE model built as radgraph.RadGraph builds it, then its weights set and saved.
    bert_embedder = token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(bert),
                                                                            max_length=512)
    embedder = text_field_embedders.BasicTextFieldEmbedder({"bert": bert_embedder})
    arguments = DotMap(config["model"])
    for name in ("type", "embedder", "initializer", "module_initializer"):
        del arguments[name]
    model = dygie.DyGIE(vocab=Vocabulary.from_files(str(vocabulary)), embedder=embedder, **arguments)
    with torch.no_grad():
        transformer = embedder.token_embedder_bert._matched_embedder.transformer_model
        for parameter in transformer.parameters():
            parameter.zero_()
        layer = transformer.encoder.layer[0]
        norms = (transformer.embeddings.LayerNorm, layer.attention.output.LayerNorm, layer.output.LayerNorm)
        for norm in norms:
            norm.weight.fill_(1.0)
        for k, word in enumerate(words):
            transformer.embeddings.word_embeddings.weight[k] = torch.tensor(
                [3.0 if word in ANATOMY_WORDS else -3.0, 1, -1, 1, -1, 1, -1, 0])
        scorer = model._ner._ner_scorers["radgraph-xl__ner_labels"]
        hidden = scorer[0]._module._linear_layers[0]
        hidden.weight.zero_()
        hidden.bias.zero_()
        hidden.weight[0, 0] = 1.0                      # relu(first component of the span's start word)
        label = scorer[1]._module
        label.weight.zero_()
        label.bias.fill_(-100.0)
        label.weight[0, 0], label.bias[0] = 10.0, -1.0  # column 0 = label 1 = Anatomy::definitely present
        for parameter in model._relation.parameters():
            parameter.zero_()
        model._relation._relation_scorers["radgraph-xl__relation_labels"].bias.fill_(-1000.0)
    torch.save(model.state_dict(), folder / "weights.th")
    return root


@pytest.fixture(scope="module")
def tiny_radgraph(tmp_path_factory) -> Path:
    pytest.importorskip("radgraph", reason="the optional radgraph package is not installed")
    return build_tiny_radgraph_xl(tmp_path_factory.mktemp("radgraph"))


@pytest.fixture(scope="module")
def radgraph_extractor(tiny_radgraph):
    extractor, note = make_extractor("radgraph", radgraph_dir=tiny_radgraph)
    assert note == ""
    extractor.load()
    return extractor


def test_tiny_checkpoint_has_the_radgraph_xl_layout(tiny_radgraph):
    folder = tiny_radgraph / "radgraph-xl"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "vocabulary", "weights.th"]
    assert (folder / "vocabulary" / "radgraph-xl__ner_labels.txt").is_file()


def test_radgraph_loads_offline_and_tags_anatomy(radgraph_extractor):
    annotations = radgraph_extractor.annotate(["Small left pleural effusion.", "Mild cardiomegaly."])
    tagged = [(e["tokens"], e["label"]) for e in annotations[0]["entities"].values()]
    assert tagged == [("left", ANAT), ("pleural", ANAT)]
    assert annotations[1]["entities"] == {}
    queries = [SentenceQuery("Small left pleural effusion.", "Pleural Effusion"),
               SentenceQuery("Consolidation at both lung bases.", "Consolidation"),
               SentenceQuery("Trace pneumothorax on the left.", "Pneumothorax"),
               SentenceQuery("Right lower lobe opacity.", "Lung Opacity"),
               SentenceQuery("Mild cardiomegaly.", "Cardiomegaly")]
    assert radgraph_extractor.locations(queries) == [("left pleural",), ("bibasilar",), ("left",),
                                                     ("right lower",), ()]


def test_auto_picks_hybrid_when_radgraph_xl_is_there(tiny_radgraph, radgraph_extractor):
    extractor, note = make_extractor("auto", radgraph_dir=tiny_radgraph)
    assert extractor.name == "hybrid" and note == ""
    extractor.radgraph = radgraph_extractor  # reuse the loaded model
    found = extractor.locations([
        SentenceQuery("Mild cardiomegaly.", "Cardiomegaly"),
        SentenceQuery("Small pleural effusions are present bilaterally.", "Pleural Effusion")])
    assert found == [("cardiomegaly",), ("bilateral pleural",)]  # from the rules: RadGraph finds no side


def test_cli_with_the_radgraph_extractor(tiny_radgraph, tmp_path):
    from cxrg.cli.main import run

    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        writer.writerow(["r1", "Right lower lobe opacity.", "Lung Opacity"])
        writer.writerow(["r2", "No pneumothorax.", "Pneumothorax"])
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        run(["curate", "--reports", str(reports), "--extractor", "radgraph",
             "--radgraph-dir", str(tiny_radgraph), "--out", str(out)])
    assert done.value.code == 0
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [(r["report_id"], r["prompt"], r["extractor"]) for r in rows] == [
        ("r1", "right lower lung opacity", "radgraph")]
