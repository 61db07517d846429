"""cxrg: chest X-ray phrase grounding toolkit."""

__version__ = "0.1.0"
