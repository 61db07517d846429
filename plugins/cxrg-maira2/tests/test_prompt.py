"""What MAIRA-2 is shown: the chat messages of its phrase-grounding task and its 8-bit image."""

from __future__ import annotations

import numpy as np
from cxrg_maira2.prompt import phrase_grounding_messages, to_maira_image


def test_messages_are_maira2_phrase_grounding_format():
    assert phrase_grounding_messages("Left pleural effusion") == [{"role": "user", "content": [
        {"index": None, "text": "Given the current frontal image", "type": "text"},
        {"index": 0, "text": None, "type": "image"},
        {"index": None, "type": "text", "text": " Repeat the following finding as a grounded phrase with "
         "bounding boxes indicating all locations where it can be seen in the given chest X-ray image. "
         "Finding: Left pleural effusion"},
    ]}]


def test_image_is_min_max_stretched_to_8_bits():
    image = np.array([[0.2, 0.3], [0.5, 0.6]], np.float32)
    pil = to_maira_image(image)
    assert pil.mode == "L" and pil.size == (2, 2)
    assert np.asarray(pil).tolist() == [[0, 63], [191, 255]]  # (v - 0.2) / 0.4 * 255, truncated
    assert np.asarray(to_maira_image(np.full((3, 4), 0.7, np.float32))).tolist() == [[0] * 4] * 3
