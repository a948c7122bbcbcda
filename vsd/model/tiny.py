"""Tiny, complete, offline LLaVA (and text LM) checkpoints built from a few size knobs.

Every test, the demo and the CPU training config need a real model that loads through the same
code path as ``llava-hf/llava-1.5-13b-hf`` (``LlavaForConditionalGeneration.from_pretrained`` +
``AutoProcessor.from_pretrained``) without touching the hub. So this writes the whole directory:
config (CLIP vision tower + Llama text model), seeded random safetensors weights, a byte-level BPE
tokenizer trained here on our own prompt/caption vocabulary (byte-level, so any text round-trips
and nothing is ``<unk>``), a Vicuna / LLaVA-1.5 chat template and a ``LlavaProcessor``.
"""

from __future__ import annotations

import math
import os

from vsd.errors import VSDError

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
BOS, EOS, UNK, PAD, IMAGE = "<s>", "</s>", "<unk>", "<pad>", "<image>"

# LLaVA-1.5 / Vicuna v1 conversation format: "USER: <image>\n{prompt} ASSISTANT: {answer}</s>".
# The generation prompt is "ASSISTANT:" (no trailing space) so that the prompt is a token-exact
# prefix of the full conversation: the answer's first token carries its leading space. Assistant
# text sits in {% generation %} so `return_assistant_tokens_mask` can find the answer tokens.
# BOS is added by the tokenizer (as the Llama tokenizer of llava-hf does), not by the template.
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}{%- endif -%}"
    "{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}"
    "{%- if not loop.first -%}{{ ' ' }}{%- endif -%}"
    "{{ 'USER: ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{%- for c in message['content'] if c['type'] == 'image' -%}{{ '<image>\\n' }}{%- endfor -%}"
    "{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- else -%}"
    "{{ ' ASSISTANT: ' }}"
    "{%- generation -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for c in message['content'] if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}{%- endif -%}"
    "{{ eos_token }}"
    "{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)

# The refinement LM speaks plain text: same turn format, no images.
TEXT_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set text = message['content'] if message['content'] is string else "
    "(message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('')) -%}"
    "{%- if message['role'] == 'system' -%}{{ text }}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}{%- if not loop.first -%}{{ ' ' }}{%- endif -%}{{ 'USER: ' + text }}"
    "{%- else -%}{{ ' ASSISTANT: ' }}{%- generation -%}{{ text }}{{ eos_token }}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
)

RELATIONS_WORDS = [
    "on",
    "in",
    "next to",
    "under",
    "above",
    "behind",
    "in front of",
    "to the left of",
    "to the right of",
]

# What the BPE merges are learnt from: the three task prompts, the relations, caption words, colours,
# shapes and common objects, so our texts tokenize into few tokens (short sequences = fast tests).
_CORPUS = [
    "Given the image, choose the most appropriate preposition to complete the sentence: "
    "'The {subject} is [BLANK] the {object}'. Select from: on, in, next to, under, above, behind, "
    "in front of, to the left of, to the right of.",
    "Based on the image, provide a concise textual description or phrase of the single spatial "
    "relationship between the two objects {subject} and {object}.",
    "Using the image as a reference, generate three detailed and diverse textual descriptions that "
    "describe the spatial relationship between the two objects {subject} and {object}.",
    "USER: ASSISTANT: system You are a helpful assistant. Rewrite the description so it is fluent "
    "and diverse. Keep the subject, the object and the relation. Describe the scene.",
    "the a an is are sits lies stands placed located positioned near beside close far left right "
    "top bottom front back middle center side corner edge over below beneath inside outside onto "
    "into of with and or to from at by there this that it its two three one some several many",
    "red green blue yellow orange purple pink brown black white gray grey cyan magenta dark light",
    "circle square rectangle triangle ellipse star cross box ball cube sphere block shape small big "
    "large tiny tall short wide long round",
    "man woman person people boy girl child dog cat horse bird car bus truck bike bicycle train boat "
    "plane table chair sofa couch bed desk shelf cup mug bottle glass plate bowl fork knife spoon "
    "phone laptop computer keyboard mouse book lamp window door wall floor ground grass tree sky "
    "road street building house sign pole fence water sea beach sand snow umbrella bag hat shirt "
    "shoe hand head kite frisbee skateboard surfboard pizza cake sandwich banana apple orange clock "
    "vase picture mirror sink toilet bench cloud mountain rock field room kitchen",
    "The cup is on the table. The dog is under the chair. The lamp is next to the bed. "
    "The cat is in the box. The bird is above the tree. The car is behind the bus. "
    "The man is in front of the building. The ball is to the left of the cube. "
    "The sign is to the right of the door. A red circle is to the left of a green square.",
    "0 1 2 3 4 5 6 7 8 9 10 . , ; : ' \" ? ! ( ) [ ] - BLANK",
]


def _train_tokenizer(vocab_size: int):
    """A byte-level BPE trained on ``_CORPUS`` (deterministic), with the special tokens pinned to
    ids 0..4 and BOS added by the post-processor."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _CORPUS * 2 + [" " + w for line in _CORPUS for w in line.split()]
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return tok


def build_tokenizer(vocab_size: int | None = None, chat_template: str = LLAVA_CHAT_TEMPLATE):
    """The shared tiny tokenizer as a transformers fast tokenizer: BOS added, EOS not (the chat
    template ends answers with it); right padding for training (generation pads left itself)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(vocab_size or 1024),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        model_max_length=4096,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = chat_template
    return tok


# arch -> (config, model, processor, PIL image processor) class names in transformers
ARCHS = {
    "llava": ("LlavaConfig", "LlavaForConditionalGeneration", "LlavaProcessor", "CLIPImageProcessorPil"),
    "llava_next": (
        "LlavaNextConfig",
        "LlavaNextForConditionalGeneration",
        "LlavaNextProcessor",
        "LlavaNextImageProcessorPil",
    ),
}


def _pinpoints(side: int) -> list[list[int]]:
    return [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]


def _grid_for(image_tokens: int | None, image_size: int, patch_size: int) -> int:
    """Image side in pixels: ``image_tokens`` (a square number) patches if given."""
    if image_tokens is None:
        if image_size % patch_size:
            raise VSDError(
                f"tiny model: image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        return image_size
    side = math.isqrt(image_tokens)
    if side * side != image_tokens or side < 1:
        raise VSDError(f"tiny model: image_tokens must be a square number, got {image_tokens}")
    return side * patch_size


def _llama_config(tok, *, hidden: int, layers: int, heads: int, max_positions: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _save_model(model, tok, out_dir: str) -> None:
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)


def build_tiny_llava(
    out_dir: str,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    text_hidden: int = 64,
    text_layers: int = 2,
    heads: int = 4,
    vocab: int | None = None,
    seed: int = 0,
    image_tokens: int | None = None,
    arch: str = "llava",
) -> str:
    """Write a complete offline LLaVA-1.5-style checkpoint to ``out_dir`` and return its path.

    ``image_tokens`` (a square number, e.g. 576 as in LLaVA-1.5-336px) overrides ``image_size`` as
    ``sqrt(image_tokens) * patch_size``; otherwise the model sees ``(image_size/patch_size)**2``
    tokens per image. ``vocab`` is the BPE vocabulary size (default 1024). ``arch="llava_next"``
    writes the high-resolution LLaVA-NeXT variant instead (AnyRes grids of 1x1..2x2 tiles), so the
    class-from-config path is exercised too. Same args + seed = same bytes of weights.
    """
    import torch
    import transformers

    if arch not in ARCHS:
        raise VSDError(f"tiny model: arch must be one of {sorted(ARCHS)}, got {arch!r}")
    config_cls, model_cls, processor_cls, image_processor_cls = (
        getattr(transformers, n) for n in ARCHS[arch]
    )

    image_size = _grid_for(image_tokens, image_size, patch_size)
    n_image_tokens = (image_size // patch_size) ** 2
    os.makedirs(out_dir, exist_ok=True)
    tok = build_tokenizer(vocab, LLAVA_CHAT_TEMPLATE)
    vision = transformers.CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=max(1, min(heads, vision_hidden // 8)),
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = _llama_config(
        tok, hidden=text_hidden, layers=text_layers, heads=heads, max_positions=max(2048, 4 * n_image_tokens)
    )
    extra = {"image_grid_pinpoints": _pinpoints(image_size)} if arch == "llava_next" else {}
    config = config_cls(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=n_image_tokens,
        tie_word_embeddings=False,
        **extra,
    )
    config.bos_token_id, config.eos_token_id, config.pad_token_id = (
        tok.bos_token_id,
        tok.eos_token_id,
        tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    _save_model(model, tok, out_dir)

    image_processor = image_processor_cls(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        **extra,
    )
    processor = processor_cls(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=1,  # the CLIP CLS token, dropped again by the "default" strategy
    )
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_text_lm(
    out_dir: str,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab: int | None = None,
    seed: int = 0,
) -> str:
    """Write a tiny Llama causal LM (same tokenizer, plain-text chat template) for refinement."""
    import torch
    from transformers import LlamaForCausalLM

    os.makedirs(out_dir, exist_ok=True)
    tok = build_tokenizer(vocab, TEXT_CHAT_TEMPLATE)
    config = _llama_config(tok, hidden=hidden, layers=layers, heads=heads, max_positions=2048)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    _save_model(model, tok, out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


# Bump when the builder's output changes, so cached tiny models are rebuilt rather than reused.
BUILDER_VERSION = 1
TINY_SCHEME = "tiny:"


def cache_root() -> str:
    """Where models fetched from S3 and cached tiny models live (``VSD_CACHE_DIR``)."""
    return os.environ.get("VSD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vsd")


def ensure_tiny(kind: str = "llava", cache_dir: str | None = None, **kwargs) -> str:
    """The path of a cached tiny model, built on first use: lets a config name ``tiny:llava`` (or
    ``tiny:llava_next``, ``tiny:text-lm``, ``tiny:llava-sglang``) and work on a fresh checkout with no other step. The
    build goes to a temp dir renamed into place, so concurrent Ray workers never see half a model."""
    import hashlib
    import json
    import shutil
    import tempfile

    builders = {
        "llava": build_tiny_llava,
        "llava_next": build_tiny_llava,
        "text-lm": build_tiny_text_lm,
        "llava-sglang": _build_tiny_sglang,
    }
    if kind not in builders:
        raise VSDError(f"tiny model: unknown kind {kind!r} (known: {', '.join(builders)})")
    if kind == "llava_next":
        kwargs = {**kwargs, "arch": "llava_next"}
    key = hashlib.sha256(json.dumps([BUILDER_VERSION, kind, kwargs], sort_keys=True).encode()).hexdigest()[
        :16
    ]
    root = os.path.join(cache_dir or cache_root(), "tiny")
    final = os.path.join(root, f"{kind}-{key}")
    if os.path.isfile(os.path.join(final, "config.json")):
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{kind}-", dir=root)
    try:
        builders[kind](tmp, **kwargs)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race; its copy is identical (same seed)
            if not os.path.isfile(os.path.join(final, "config.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build_tiny_sglang(out_dir: str, **kwargs) -> str:
    """``tiny:llava-sglang``: the tiny LLaVA (``build_tiny_llava(**kwargs)``, same weights as
    ``tiny:llava`` with the same arguments) written in the original LLaVA layout SGLang serves."""
    import tempfile

    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vsd.model.sglang_layout import write_original_layout

    with tempfile.TemporaryDirectory(prefix=".tiny-hf-") as tmp:
        build_tiny_llava(tmp, **kwargs)
        model = LlavaForConditionalGeneration.from_pretrained(tmp).eval()
        write_original_layout(model, AutoProcessor.from_pretrained(tmp), out_dir)
    return out_dir


def resolve_tiny_name(name: str) -> str | None:
    """``tiny:llava`` / ``tiny:llava?image_tokens=576`` -> cached path; None for other names."""
    if not str(name).startswith(TINY_SCHEME):
        return None
    spec = name[len(TINY_SCHEME) :]
    kind, _, query = spec.partition("?")
    kwargs: dict = {}
    for item in filter(None, query.split("&")):
        k, _, v = item.partition("=")
        try:
            kwargs[k] = int(v)
        except ValueError:
            raise VSDError(f"tiny model {name!r}: {k} must be an integer, got {v!r}") from None
    try:
        return ensure_tiny(kind or "llava", **kwargs)
    except TypeError as exc:
        raise VSDError(f"tiny model {name!r}: {exc}") from None
