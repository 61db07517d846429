"""The real loading and generation path (AutoProcessor / AutoModelForCausalLM with trust_remote_code from a
local folder, chat template, processor, greedy generate, decode) on a tiny stand-in for microsoft/maira-2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cxrg_maira2.model import Maira2
from cxrg_maira2.prompt import phrase_grounding_messages
from maira_fakes import write_tiny_maira2

from cxrg.registry import Query
from cxrg.testing import check_model, synthetic_image


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_tiny_maira2(root)
    return root


@pytest.fixture(scope="module")
def model(weights):
    loaded = Maira2()
    loaded.load(weights_dir=weights)
    return loaded


def test_loads_the_folder_remote_code_class(model):
    assert type(model._model).__name__ == "TinyMaira2ForConditionalGeneration"
    text = model._processor.tokenizer.apply_chat_template(
        phrase_grounding_messages("left pleural effusion"), add_generation_prompt=True, tokenize=False)
    assert text == ("USER: Given the current frontal image<image> Repeat the following finding as a "
                    "grounded phrase with bounding boxes indicating all locations where it can be seen in "
                    "the given chest X-ray image. Finding: left pleural effusion ASSISTANT:")


def test_generates_parses_maps_and_rasterises(model):
    image = synthetic_image((300, 400))
    answer = model.generate(image, "left pleural effusion")
    assert answer == "<obj>effusion<box><x10><y20><x55><y70></box></obj>"
    heat = model.heatmap(Query(image=image, prompt="left pleural effusion"))
    # <x10> -> 0.105 * 300 + 50 = 81.5 -> 81; <y20> -> 61; <x55> -> 216; <y70> -> 211
    assert np.isnan(heat).sum() == 2 * 50 * 300 and np.nansum(heat) == (216 - 81) * (211 - 61)
    assert heat[61, 81] == 1 and heat[60, 81] == 0 and heat[210, 215] == 1 and heat[211, 215] == 0


def test_conforms(weights):
    check_model(Maira2(), weights_dir=weights)


def test_models_check_loads_it(weights):
    checked = subprocess.run([sys.executable, "-m", "cxrg", "models", "check", "maira-2", "--weights",
                              str(weights)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and checked.stdout == "maira-2: ok\n", checked.stderr
