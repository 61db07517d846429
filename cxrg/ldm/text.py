"""Prompt conditioning: CLIP token embeddings, the vocabulary codebook, and the tuned-embeddings file.

The codebook holds one row per CLIP sub-token of the vocabulary's 27 locations and 8 pathologies, plus the
special tokens begin, end and "and" (the joiner of several locations). With SD 2.1's tokenizer that is
26 location sub-tokens + 23 pathology sub-tokens - 6 shared (cardi, ome, gal, y from "cardiomegaly";
ple, ural from "pleural") = 43, + 3 = 46 rows, the paper's count. Rows start as the text encoder's own token
embeddings. **Anatomy rows** (the ones tuning trains) are the sub-tokens that spell some location
(`shared_tokens="trainable"`, the default: 26 rows with SD 2.1). A sub-token shared with a pathology
(cardi, ome, gal, y; ple, ural) is then trained too: the paper tunes on 1,201 cardiomegaly samples, whose
only location is "cardiomegaly", so they must move something. `shared_tokens="frozen"` keeps such
sub-tokens with the pathology (20 anatomy rows; cxrg before 0.2). Special rows (begin, end, "and") and
pathology-only rows never train. Padding tokens are not rows: they keep the encoder's own embedding. (The
paper's 46 names <pad> among its special rows; with SD 2.1's tokenizer a padding row would be the 47th, and
as a frozen row equal to the encoder's embedding it would change no number: docs/decisions.md.)

A prompt is encoded by the real text encoder; a forward hook on its token-embedding layer swaps in the
codebook rows, so gradients flow into the codebook only and the encoder itself never changes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cxrg.errors import InputError
from cxrg.vocab import LOCATIONS, PATHOLOGY_TEXT, Prompt

FORMAT = "cxrg.tuned-embeddings"
FORMAT_VERSION = 1


def sub_tokens(tokenizer, text: str) -> list[int]:
    """The token ids of `text` without begin/end."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


@dataclass(frozen=True)
class TokenSpan:
    """Positions [start, stop) of a prompt's tokens in its 77-token sequence (after begin, before end);
    `binding`: the positions of the binding token "and" inside it, special like begin/end (paper eq. 2-4)."""

    start: int
    stop: int
    binding: tuple[int, ...] = ()

    def positions(self) -> list[int]:
        """The non-special positions: the span without the binding token, what A_sp averages."""
        return [p for p in range(self.start, self.stop) if p not in self.binding]


def tokenize(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, list[TokenSpan]]:
    """Ids padded to the model length, and where each prompt's own tokens are (after begin, before end).

    A prompt longer than the text encoder reads (77 tokens with begin and end) is refused, naming its
    length: cut silently, its heatmap would ground a different phrase."""
    from cxrg.errors import InputError

    limit = int(tokenizer.model_max_length)
    for prompt in prompts:
        length = len(tokenizer(prompt, truncation=False).input_ids)
        if length > limit:
            raise InputError(f"prompt is {length} tokens long; the text encoder reads at most {limit} "
                             f"(with its begin and end tokens): {prompt[:60]!r}...",
                             hint="shorten the phrase (a canonical '{location} {pathology}' is short)")
    batch = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                      truncation=True, return_tensors="pt")
    spans = []
    binding = set(sub_tokens(tokenizer, BINDING_WORD))
    for ids in batch.input_ids.tolist():
        end = ids.index(tokenizer.eos_token_id, 1)
        spans.append(TokenSpan(1, end, tuple(p for p in range(1, end) if ids[p] in binding)))
    return batch.input_ids, spans


SHARED_TOKEN_RULES = ("trainable", "frozen")
BINDING_WORD = "and"
"""The word joining several locations; a special token of the losses (paper, eq. 2-4), like begin/end."""


def content_positions(tokenizer, input_ids: Sequence[int], span: TokenSpan) -> list[int]:
    """Positions of a prompt's non-special tokens: its span without the binding token "and"."""
    binding = set(sub_tokens(tokenizer, BINDING_WORD))
    return [p for p in range(span.start, span.stop) if int(input_ids[p]) not in binding]


class Codebook(torch.nn.Module):
    """Trainable rows for the vocabulary's token ids, swapped into the text encoder's token embeddings."""

    token_ids: torch.Tensor
    anatomy: torch.Tensor

    def __init__(self, token_ids: Sequence[int], rows: torch.Tensor, anatomy: Sequence[bool]) -> None:
        super().__init__()
        self.register_buffer("token_ids", torch.as_tensor(list(token_ids), dtype=torch.long))
        self.rows = torch.nn.Parameter(rows.detach().clone().to(torch.float32))
        self.register_buffer("anatomy", torch.as_tensor(list(anatomy), dtype=torch.bool))

    @classmethod
    def from_vocabulary(cls, tokenizer, text_encoder: Any, shared_tokens: str = "trainable") -> Codebook:
        ids, anatomy = vocabulary_rows(tokenizer, shared_tokens)
        table = text_encoder.get_input_embeddings().weight.detach()
        return cls(ids, table[torch.as_tensor(ids)].float().cpu(), anatomy)

    def __len__(self) -> int:
        return int(self.token_ids.numel())

    def gradient_mask(self) -> torch.Tensor:
        """(rows, 1) mask: 1 for anatomy rows, 0 elsewhere; multiply gradients by it to freeze the rest."""
        return self.anatomy.to(self.rows.dtype)[:, None]

    @contextlib.contextmanager
    def applied(self, text_encoder: Any) -> Iterator[None]:
        """Within the block, the encoder's token embedding returns codebook rows for the vocabulary ids."""
        embedding = text_encoder.get_input_embeddings()
        lookup = torch.full((embedding.num_embeddings,), -1, dtype=torch.long)
        lookup[self.token_ids.cpu()] = torch.arange(len(self))

        def swap(module, inputs, output):
            ids = inputs[0]
            index = lookup.to(ids.device)[ids]
            hit = index >= 0
            if not bool(hit.any()):
                return output
            rows = self.rows.to(device=output.device, dtype=output.dtype)[index.clamp(min=0)]
            return torch.where(hit[..., None], rows, output)

        handle = embedding.register_forward_hook(swap)
        try:
            yield
        finally:
            handle.remove()

    def save(self, path: Path, metadata: dict) -> None:
        from safetensors.torch import save_file

        from cxrg.runs import atomic_write_bytes

        tensors = {"rows": self.rows.detach().cpu().contiguous(), "token_ids": self.token_ids.cpu(),
                   "anatomy": self.anatomy.to(torch.uint8).cpu()}
        meta = {"format": FORMAT, "version": str(FORMAT_VERSION),
                **{k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}}
        tmp = Path(path).with_name(f".{Path(path).name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        atomic_write_bytes(Path(path), tmp.read_bytes())
        tmp.unlink()

    @classmethod
    def load(cls, path: Path, fingerprint: str | None = None) -> tuple[Codebook, dict[str, str]]:
        """Read a tuned-embeddings file; refuse one made for another text encoder."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise InputError("tuned embeddings file not found", where=str(path),
                             hint="make one with `cxrg tune`, or use --model ldm-frozen")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:
            raise InputError(f"cannot read the tuned embeddings: {exc}", where=str(path)) from exc
        if meta.get("format") != FORMAT or not {"rows", "token_ids", "anatomy"} <= set(tensors):
            raise InputError("not a cxrg tuned-embeddings file", where=str(path))
        if fingerprint is not None and meta.get("text_encoder") != fingerprint:
            raise InputError("these tuned embeddings were made for another text encoder "
                             f"({meta.get('text_encoder')}, loaded: {fingerprint})", where=str(path),
                             hint="tune again with the text encoder you use, or point --weights at the one "
                                  "the file was made with")
        return cls(tensors["token_ids"].tolist(), tensors["rows"], tensors["anatomy"].bool().tolist()), meta


def vocabulary_rows(tokenizer, shared_tokens: str = "trainable") -> tuple[list[int], list[bool]]:
    """Codebook token ids (begin, end, "and", then vocabulary sub-tokens in first-seen order) and which
    of them are anatomy rows (see the module docstring for `shared_tokens`)."""
    if shared_tokens not in SHARED_TOKEN_RULES:
        raise InputError(f"unknown shared_tokens rule {shared_tokens!r}",
                         hint=f"choose {' or '.join(SHARED_TOKEN_RULES)}")
    location_ids = [i for loc in LOCATIONS for i in sub_tokens(tokenizer, loc)]
    pathology_ids = {i for text in PATHOLOGY_TEXT.values() for i in sub_tokens(tokenizer, text)}
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, *sub_tokens(tokenizer, BINDING_WORD)]
    ordered: list[int] = []
    pathology_list = [i for text in PATHOLOGY_TEXT.values() for i in sub_tokens(tokenizer, text)]
    for token in [*specials, *location_ids, *pathology_list]:
        if token not in ordered:
            ordered.append(token)
    location_set = set(location_ids)
    frozen = pathology_ids if shared_tokens == "frozen" else set()
    anatomy = [t in location_set and t not in frozen and t not in specials for t in ordered]
    return ordered, anatomy


def check_in_vocabulary(prompt: str) -> Prompt:
    """The tuned model's prompts must be '{location} {pathology}' prompts of the vocabulary."""
    try:
        return Prompt.parse(prompt)
    except InputError as exc:
        raise InputError(f"the tuned ldm model only grounds vocabulary prompts: {exc.what}",
                         where=exc.where,
                         hint=f"use '<location> [and <location>] <pathology>' with locations "
                              f"{', '.join(LOCATIONS)} and pathologies {', '.join(PATHOLOGY_TEXT.values())}; "
                              "or --model ldm-frozen for free text") from None


def encode(text_encoder: Any, input_ids: torch.Tensor, codebook: Codebook | None = None
           ) -> torch.Tensor:
    """(B, 77, D) last hidden states (SD 2.1's encoder is already cut at the penultimate layer)."""
    context = codebook.applied(text_encoder) if codebook is not None else contextlib.nullcontext()
    with context:
        return text_encoder(input_ids=input_ids.to(text_encoder.device))[0]
