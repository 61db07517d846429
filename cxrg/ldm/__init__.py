"""The chest X-ray latent diffusion model: loading, text conditioning, attention capture, heatmaps.

Heavy dependencies (torch, MONAI, transformers) are imported by the submodules that need them; importing
this package alone loads nothing heavy.
"""
