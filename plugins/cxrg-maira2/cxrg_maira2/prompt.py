"""What MAIRA-2 is shown for phrase grounding: its chat messages and its 8-bit image.

Both follow MAIRA-2's processor (processing_maira2.py in the microsoft/maira-2 repository,
`format_phrase_grounding_input`): the user turn is the text "Given the current frontal image", the image,
then the instruction with the phrase; the image is converted to grey and min-max stretched to 0..255.
They are written here so that the plugin does not depend on the processor's remote code for them, and so
that the tests can check them without the weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INSTRUCTION = (" Repeat the following finding as a grounded phrase with bounding boxes indicating all "
               "locations where it can be seen in the given chest X-ray image. Finding: {phrase}")


def phrase_grounding_messages(phrase: str) -> list[dict[str, Any]]:
    """The chat messages for one phrase, in the structure MAIRA-2's chat template expects."""
    content = [
        {"index": None, "text": "Given the current frontal image", "type": "text"},
        {"index": 0, "text": None, "type": "image"},
        {"index": None, "text": INSTRUCTION.format(phrase=phrase), "type": "text"},
    ]
    return [{"content": content, "role": "user"}]


def to_maira_image(image: np.ndarray) -> Any:
    """H x W float image -> 8-bit grey PIL image, min-max stretched as MAIRA-2's `_normalize_image` does."""
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    values = values - values.min()
    peak = values.max()
    if peak > 0:  # a constant image stays black instead of dividing by zero
        values = values / peak * 255
    return Image.fromarray(values.astype(np.uint8)).convert("L")
