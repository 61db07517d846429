"""The models against hi-ml-multimodal's own end-to-end function, the conformance kit, and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from cxrg_biovil.model import BioViL, BioViLT
from cxrg_biovil.variants import BIOVIL, BIOVIL_T
from PIL import Image

from cxrg.errors import InputError, MissingWeightsError
from cxrg.images import read_image
from cxrg.registry import Query, discover
from cxrg.testing import check_model, synthetic_image


def test_both_models_are_discovered_through_entry_points():
    entries = discover()
    for name, value in (("biovil", "cxrg_biovil.model:BioViL"), ("biovil-t", "cxrg_biovil.model:BioViLT")):
        assert entries[name].distribution == "cxrg-biovil" and entries[name].value == value


@pytest.mark.parametrize("model_class", [BioViL, BioViLT])
def test_conforms(model_class, weights):
    check_model(model_class(), weights_dir=weights)


@pytest.mark.parametrize(("fixture", "crop"), [("biovil", 480), ("biovil_t", 448)])
def test_equals_hi_ml_similarity_map_from_the_file(fixture, crop, tmp_path, request):
    """hi-ml reads the 8-bit PNG itself; the plugin gets cxrg's reading of it. Same map, clamped at 0."""
    model = request.getfixturevalue(fixture)
    path = tmp_path / "chest.png"
    Image.fromarray(np.round(synthetic_image((260, 300), seed=4) * 255).astype(np.uint8)).save(path)
    prompt = "left lower pleural effusion"
    ours = model.heatmap(Query(image=read_image(path), prompt=prompt, image_path=path))
    theirs = model._engine.get_similarity_map_from_raw_data(path, prompt)
    assert model._engine.image_inference_engine.crop_size == crop
    assert ours.shape == theirs.shape == (260, 300) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.maximum(theirs, 0), rtol=0, atol=1e-6, equal_nan=True)
    side = crop * 260 // 512  # the crop in original pixels; margins split floor/ceil
    seen = ~np.isnan(ours)
    assert seen.sum() == side * side
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    assert (rows[0], rows[-1] + 1) == ((260 - side) // 2, (260 - side) // 2 + side)
    assert (cols[0], cols[-1] + 1) == ((300 - side) // 2, (300 - side) // 2 + side)


def test_similarity_is_cosine_of_projected_embeddings(biovil):
    """Without hi-ml's engine: smooth(cos(patch, text)) on the 15 x 15 grid, then nearest upsampling."""
    import torch
    from scipy.ndimage import gaussian_filter
    from torchvision.transforms import functional as tf

    image = synthetic_image((512, 512), seed=2)  # square 512: no resize, crop 480 at offset 16
    engine = biovil._engine
    grey = image.astype(np.float64) - image.min()
    grey = (grey / grey.max() * 255).astype(np.uint8)  # hi-ml's 8-bit min-max remap
    pixels = tf.to_tensor(Image.fromarray(grey))[:, 16:496, 16:496]

    with torch.no_grad():
        patches = engine.image_inference_engine.model(pixels.repeat(3, 1, 1)[None]).projected_patch_embeddings
        tokens = engine.text_inference_engine.tokenizer(["right pneumothorax"], return_tensors="pt")
        text = engine.text_inference_engine.model.get_projected_text_embeddings(
            tokens.input_ids, tokens.attention_mask)[0]
    patches = torch.nn.functional.normalize(patches[0].detach(), dim=0)  # 128 x 15 x 15
    grid = gaussian_filter(torch.einsum("dhw,d->hw", patches, text).numpy(), sigma=1.5)
    expected = np.full((512, 512), np.nan, np.float32)
    expected[16:496, 16:496] = np.maximum(np.kron(grid, np.ones((32, 32))), 0)
    heat = biovil.heatmap(Query(image=image, prompt="right pneumothorax"))
    assert grid.shape == (15, 15)
    np.testing.assert_allclose(heat, expected, atol=2e-6, equal_nan=True)


def test_missing_weights_name_the_file(tmp_path, weights):
    with pytest.raises(MissingWeightsError) as caught:
        BioViL().load(weights_dir=tmp_path)
    message = caught.value.one_line()
    assert "biovil_image_resnet50_proj_size_128.pt not found" in message
    assert str(tmp_path / BIOVIL.text_repo / BIOVIL.checkpoint) in message
    assert "hf download microsoft/BiomedVLP-CXR-BERT-specialized --revision v1.1" in message
    # the checkpoint alone, at the top of the weights folder, is accepted; then the text folder is missing
    shutil.copy(weights / BIOVIL_T.text_repo / BIOVIL_T.checkpoint, tmp_path / BIOVIL_T.checkpoint)
    with pytest.raises(MissingWeightsError, match=r"text model folder lacks config.json, vocab.txt, "
                                                  r"model.safetensors or pytorch_model.bin"):
        BioViLT().load(weights_dir=tmp_path)


def test_cxrg_home_is_the_default_weights_folder(weights, monkeypatch):
    monkeypatch.setenv("CXRG_HOME", str(weights))
    model = BioViLT()
    model.load()
    assert model.heatmap(Query(image=synthetic_image((64, 80)), prompt="edema")).shape == (64, 80)


def _copy_text_folder(weights: Path, tmp_path: Path) -> Path:
    folder = tmp_path / BIOVIL.text_repo
    shutil.copytree(weights / BIOVIL.text_repo, folder, ignore=shutil.ignore_patterns("*.pt"))
    return folder


def test_wrong_or_corrupt_checkpoint_is_one_clear_error(weights, tmp_path):
    folder = _copy_text_folder(weights, tmp_path)
    shutil.copy(weights / BIOVIL_T.text_repo / BIOVIL_T.checkpoint, folder / BIOVIL.checkpoint)
    with pytest.raises(InputError, match=r"does not fit the biovil image model \(resnet50\): 0 missing keys.*"
                                         r"unexpected"):
        BioViL().load(weights_dir=tmp_path)
    (folder / BIOVIL.checkpoint).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read the biovil image checkpoint"):
        BioViL().load(weights_dir=tmp_path)


def test_prompt_with_a_special_token_is_an_input_error(biovil):
    with pytest.raises(InputError, match=r"cannot encode the prompt '\[CLS\] effusion'"):
        biovil.heatmap(Query(image=synthetic_image((64, 64)), prompt="[CLS] effusion"))
