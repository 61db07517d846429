"""MAIRA-2 (Microsoft Research) phrase grounding as a cxrg model: its boxes, rasterised."""

__version__ = "0.1.0"
