"""GPU checks (pytest -m gpu), run only where CUDA is present; and the GPU suite's dry mode on CPU (slow).

On a GPU: the fast heatmap path equals the reference path (float32), bfloat16 agrees with float32 on the
tiny model, and one 512 px heatmap of the real architecture stays under a stated memory bound.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine, reference_maps
from cxrg.ldm.loading import load_ldm
from cxrg.ldm.tiny import write_tiny

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
IMAGE = np.random.default_rng(3).random((90, 80)).astype(np.float32)
MEMORY_BOUND_GIB = 6.0
"""One fast-path heatmap at 512 px, float32, real architecture (263.6 M-parameter U-Net): weights about
1.1 GiB, activations of a 10-pass batch; 6 GiB leaves room and catches a leak or an un-batched blow-up."""


def _bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCHMARKS / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("w"), seed=0)


@pytest.mark.gpu
@needs_cuda
def test_fast_path_equals_reference_on_gpu(tiny):
    engine = LdmEngine(load_ldm(tiny, device="cuda"), HeatmapSettings(otsu=False), batch_size=7)
    fast = engine.maps(IMAGE, ["left lower pleural effusion"])[0]
    slow = reference_maps(engine, IMAGE, ["left lower pleural effusion"])[0]
    assert np.abs(fast - slow).max() <= 1e-4 * np.abs(slow).max()


@pytest.mark.gpu
@needs_cuda
def test_bfloat16_agrees_with_float32_on_gpu(tiny):
    maps = {dtype: LdmEngine(load_ldm(tiny, device="cuda", dtype=dtype), HeatmapSettings(otsu=False))
            .maps(IMAGE, ["right apical pneumothorax"])[0] for dtype in ("float32", "bfloat16")}
    assert np.corrcoef(maps["float32"].ravel(), maps["bfloat16"].ravel())[0, 1] > 0.98


@pytest.mark.gpu
@needs_cuda
def test_one_heatmap_at_512_stays_under_the_memory_bound():
    bench = _bench_gpu()
    device = torch.device("cuda")
    ldm = bench.make_ldm(512, torch.float32, device)
    engine = LdmEngine(ldm, HeatmapSettings(otsu=False), batch_size=10)
    _, _, peak = bench.timed(device, lambda: engine.maps(np.random.default_rng(0).random((600, 512))
                                                          .astype(np.float32), ["left pneumonia"]))
    assert peak < MEMORY_BOUND_GIB


@pytest.mark.slow
def test_gpu_suite_dry_mode_on_cpu(tmp_path):
    result = _bench_gpu().main(["--device", "cpu", "--size", "64", "--images", "2", "--draws", "4",
                                "--dtypes", "float32,bfloat16", "--batches", "1,2", "--sdpa-batches", "2",
                                "--inference-steps", "20",
                                "--compile", "--compile-backend", "eager", "--out", str(tmp_path / "r.json")])
    rows = {row["what"]: row for row in result["rows"]}
    assert {f"batch {n} {d} sdpa" for n in (1, 2) for d in ("float32", "bfloat16")} <= rows.keys()
    assert rows["batch 2 float32 explicit"]["images_per_s"] > 0 and rows["batch 2 float32 sdpa"]["ratio"] > 0
    estimates = [r for r in result["rows"] if r["what"].startswith("estimate:")]
    assert len(estimates) == 2 and all(r["hours"] > 0 for r in estimates)
    assert rows["torch.compile on, batch 2"]["images_per_s"] > 0
    assert rows["heatmap fast float32"]["max_rel_diff_vs_reference"] <= 1e-4
    assert rows["heatmap fast float32"]["ratio"] > 1
    assert rows["tuning step fast"]["max_rel_grad_diff"] <= 1e-3
    assert rows["classifier U-Net passes float32"]["passes_per_s"] > 0
    assert (tmp_path / "r.json").is_file()
