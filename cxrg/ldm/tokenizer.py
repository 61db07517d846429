"""The Stable Diffusion 2.1 CLIP tokenizer, built offline from the BPE merges shipped with cxrg.

SD 2.1 uses OpenAI CLIP's byte-level BPE (49,408 tokens: 256 byte symbols, the same with the end-of-word
marker, 48,894 merges, begin 49406, end 49407), lower-cased, 77 positions. The merges file
`bpe_simple_vocab_16e6.txt.gz` (MIT, see BPE_LICENSE.txt) is all that is needed: the vocabulary is the byte
symbols followed by the merges in order. Padding: SD 2.1's tokenizer pads with "!" (id 0, as OpenCLIP
does); a real tokenizer folder, when given, wins over these defaults.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2
MAX_LENGTH = 77
BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "!"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def vocabulary_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id map and merge list, from the shipped merges file."""
    raw = resources.files("cxrg.ldm").joinpath(BPE_FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}, [" ".join(m) for m in merges]


def write_tokenizer_files(folder: Path) -> Path:
    """vocab.json, merges.txt and the config of SD 2.1's tokenizer, in Hugging Face's layout."""
    vocab, merges = vocabulary_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "do_lower_case": True,
              "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD,
              "clean_up_tokenization_spaces": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD}, indent=2), encoding="utf-8")
    return folder


@lru_cache(maxsize=4)
def load_tokenizer(folder: str | None = None):
    """A transformers CLIPTokenizer: from `folder` (a Hugging Face tokenizer folder) or built offline."""
    from transformers import CLIPTokenizer

    if folder is not None:
        return CLIPTokenizer.from_pretrained(folder)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cxrg-tokenizer-") as tmp:
        return CLIPTokenizer.from_pretrained(str(write_tokenizer_files(Path(tmp))))
