"""A tiny stand-in for the microsoft/maira-2 folder, loaded through the same path as the real one.

It is a Hugging Face folder whose config names its model class through `auto_map` and a module in the
folder (what `trust_remote_code` loads, as for MAIRA-2's Maira2ForConditionalGeneration), with a LLaVA
processor (a word-level tokenizer with MAIRA-2's grounding tokens <obj> <box> <x0..99> <y0..99>, a chat
template, a CLIP image processor). The language model is wired as a bigram machine: every layer's output
projection is zero and the embeddings are one-hot, so the next token depends on the current token only,
and the LM head makes greedy decoding after "ASSISTANT:" spell out ANSWER, then stop.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

ANSWER = ["<obj>", "effusion", "<box>", "<x10>", "<y20>", "<x55>", "<y70>", "</box>", "</obj>"]
TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}USER: {% for part in "
            "message['content'] %}{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}"
            "{% endif %}"
            "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}")
REMOTE_CODE = '''"""Stands in for MAIRA-2's remote modeling code, loaded with trust_remote_code."""
from transformers import LlavaForConditionalGeneration


class TinyMaira2ForConditionalGeneration(LlavaForConditionalGeneration):
    pass
'''
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
GROUNDING = (["<obj>", "</obj>", "<box>", "</box>"] + [f"<x{i}>" for i in range(100)]
             + [f"<y{i}>" for i in range(100)])
WORDS = ["USER:", "ASSISTANT:", "effusion", "pleural", "left"]


def write_tiny_maira2(root: Path) -> Path:
    """Write the folder at root/microsoft/maira-2 and return it."""
    folder = root / "microsoft" / "maira-2"
    vocab = {token: i for i, token in enumerate(SPECIAL + GROUNDING + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.Fuse()  # tokens back to back, as MAIRA-2's grounding tokens decode
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>", chat_template=TEMPLATE,
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=16, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, image_token="<image>", chat_template=TEMPLATE)
    processor.save_pretrained(folder)

    size = -(-len(vocab) // 4) * 4  # one-hot embeddings need hidden >= vocabulary; 2 heads of even size
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=16),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=size, intermediate_size=32,
                                num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                max_position_embeddings=256, tie_word_embeddings=False,
                                eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"]),
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    config.auto_map = {"AutoModelForCausalLM": "modeling_tiny_maira2.TinyMaira2ForConditionalGeneration"}
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():
        language = model.model.language_model
        language.embed_tokens.weight.zero_()
        language.embed_tokens.weight[:, : len(vocab)] = torch.eye(len(vocab))
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = model.lm_head.weight
        head.zero_()
        head[vocab["</s>"], :] = 10.0  # any token not in the chain is followed by the end
        chain = ["ASSISTANT:", *ANSWER, "</s>"]
        for current, following in zip(chain, chain[1:], strict=False):
            head[:, vocab[current]] = 0.0
            head[vocab[following], vocab[current]] = 10.0
    model.generation_config.eos_token_id = vocab["</s>"]
    model.generation_config.pad_token_id = vocab["<pad>"]
    model.save_pretrained(folder)
    (folder / "modeling_tiny_maira2.py").write_text(REMOTE_CODE)
    return folder
