"""Per-word heatmaps (as DAAM's word heat maps): each word's own sub-tokens through the phrase pipeline.

The phrase's heatmap averages the attention of all its tokens; a word's map averages only that word's
sub-tokens (CLIP's tokenizer reads each whitespace-separated word on its own, so a word's tokens are a
contiguous run of the prompt's), then goes through the same post-processing (per-map min-max, mean,
smoothing, min-max, Otsu for the frozen model, back to the image's geometry). The inversion is shared with
the phrase's map (the engine keeps the last image's trajectory).
"""

from __future__ import annotations

import numpy as np
import torch

from cxrg.ldm.text import TokenSpan, sub_tokens


def word_spans(tokenizer, prompt: str) -> list[tuple[str, TokenSpan]]:
    """(word, its token positions) for each word of `prompt`, in the 77-token sequence (begin at 0). A word
    that appears twice gets '#2' on its second key."""
    words = prompt.split()
    full = list(tokenizer(" ".join(words), add_special_tokens=False).input_ids)
    out: list[tuple[str, TokenSpan]] = []
    position, seen = 1, dict[str, int]()
    for word in words:
        count = len(sub_tokens(tokenizer, word))
        seen[word] = seen.get(word, 0) + 1
        key = word if seen[word] == 1 else f"{word}#{seen[word]}"
        out.append((key, TokenSpan(position, position + count)))
        position += count
    if position - 1 != len(full):  # the words did not tokenize on their own as in the phrase
        return [(tokenizer.decode([token]).strip() or str(token), TokenSpan(k + 1, k + 2))
                for k, token in enumerate(full)]
    return out


def word_maps(engine, image: np.ndarray, prompt: str) -> dict[str, np.ndarray]:
    """word -> float32 heatmap at the image's size (NaN outside the model's crop)."""
    from cxrg.ldm.heatmap import postprocess

    spans = word_spans(engine.ldm.tokenizer, prompt)
    if not spans:
        return {}
    with torch.inference_mode():
        pixels = engine.model_input(image)
        trajectory = engine.trajectory(pixels)
        context, _ = engine.contexts([prompt])
        attention = engine.captured_maps(trajectory, context.expand(len(spans), -1, -1),
                                         [span for _, span in spans])
    h, w = image.shape[:2]
    return {word: np.asarray(engine.transform.heatmap_to_image(
        postprocess(attention[k], engine.size, engine.settings), h, w), dtype=np.float32)
        for k, (word, _) in enumerate(spans)}
