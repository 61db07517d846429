"""BioViL and BioViL-T (Microsoft hi-ml-multimodal) as cxrg phrase-grounding models."""

__version__ = "0.1.0"
