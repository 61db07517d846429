"""Grounded classification (paper Appendix K): the zero-shot diffusion classifier of Li et al. (2023) on the
frozen LDM, with each class's denoising error weighted by a phrase heatmap (eq. 8).

Modules, one idea each:
- diffusion: the (t, eps) draws, v -> eps, per-position denoising errors batched over draws and prompts,
  eq. 8's weighted error, heatmaps brought to latent resolution;
- heatmaps: the heatmap strategies (none, fixed, location, tuned) for one image;
- data: positives (MS-CXR(-loc) or generic CSV) and negatives (generic CSV or MIMIC-CXR "No Finding");
- runner: the loop over images with a resumable run directory (scores.csv);
- stats: AUROC with ties, the paired stratified bootstrap, equal-size mIoU bins and the bootstrap p-value;
- report: summary.json, auroc.csv, bins.csv, results.md and results.png.

Every choice the paper leaves open is in docs/classify.md.
"""


def run(*args, **kwargs):
    """`cxrg classify` as a call (cxrg.classify.command.run), imported lazily."""
    from cxrg.classify.command import run as _run

    return _run(*args, **kwargs)
