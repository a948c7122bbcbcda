"""Tiny, offline checkpoints of the real proposal architectures, built from configs.

Tests, benches and the demo's detector need OWLv2, Grounding DINO and Depth Anything models that
load through the same ``Auto*.from_pretrained`` calls as the hub checkpoints, without a download.
These builders write (or return) seeded random models with real processors: the image processors
are the architectures' own (PIL backends, no torchvision needed) and the tokenizers are the real
classes (`CLIPTokenizer`, `BertTokenizer`) over a small vocabulary made here from the words they
will see, so every name of the vocabulary tokenizes to whole words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "!"


def _words(texts: Iterable[str]) -> list[str]:
    return sorted({w for t in texts for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", t.lower())})


def clip_tokenizer(texts: Iterable[str], max_length: int = 16):
    """A `CLIPTokenizer` (byte-level BPE, ``</w>`` word ends) whose merges spell every word of
    ``texts`` as one token. EOS has the highest id: CLIP-style text towers pool at ``argmax(ids)``.
    Pad is ``!`` (id 0), as in the OWL-ViT tokenizers."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _words(texts):
        if len(word) < 2:
            continue
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merge = (left, right)
            if merge not in merges:
                merges.append(merge)
            left += right
            vocab.setdefault(left, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=max_length,
    )


def bert_tokenizer(texts: Iterable[str]):
    """A `BertTokenizer` (WordPiece) whose vocabulary holds every word of ``texts`` and ``.``."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [w for w in _words(list(texts) + ["."]) if w not in specials]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    return BertTokenizer(vocab=vocab)


def owl(
    texts: Iterable[str],
    *,
    version: int = 2,
    image_size: int = 64,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    text_hidden: int = 32,
    text_layers: int = 1,
    seed: int = 0,
):
    """(OWL-ViT or OWLv2 ``ForObjectDetection``, its processor) with random weights; ``texts``
    seeds the tokenizer's vocabulary (the object names it will be prompted with).

    OWLv2's PIL image processor needs scipy (anti-aliased resize); OWL-ViT's does not.
    """
    import torch
    import transformers

    prefix = "Owlv2" if version == 2 else "OwlViT"
    tok = clip_tokenizer(texts)
    config = getattr(transformers, f"{prefix}Config")(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": text_hidden,
            "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": text_layers,
            "num_attention_heads": 2,
            "max_position_embeddings": tok.model_max_length,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "image_size": image_size,
            "patch_size": patch_size,
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
        },
        projection_dim=text_hidden,  # OWL's class head compares patch embeddings (text width) with queries
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForObjectDetection")(config).eval()
    side = {"height": image_size, "width": image_size}
    extra = {} if version == 2 else {"crop_size": side}
    images = getattr(transformers, f"{prefix}ImageProcessorPil")(size=side, **extra)
    return model, getattr(transformers, f"{prefix}Processor")(image_processor=images, tokenizer=tok)


def grounding_dino(texts: Iterable[str], *, tiny: bool = True, max_text_len: int = 256, seed: int = 0):
    """(`GroundingDinoForObjectDetection`, `GroundingDinoProcessor`) with random weights.

    ``tiny``: a Swin of width 16 and a 1-layer BERT of width 32, 1 encoder and 2 decoder layers,
    128-px images (its extra 4th level, 1/64 of the side, must stay above 1x1); otherwise Grounding
    DINO-T's shapes (Swin-T, BERT-base, 6+6 layers, 900 queries, 800-px images) for benchmarks. The tokenizer is always a small `BertTokenizer` over ``texts``.
    """
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tok = bert_tokenizer(texts)
    if tiny:
        backbone = SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 2],
            window_size=4,
            out_indices=[2, 3, 4],
        )
        text = BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=max_text_len,
        )
        config = GroundingDinoConfig(
            backbone_config=backbone,
            text_config=text,
            d_model=32,
            num_queries=20,
            encoder_layers=1,
            decoder_layers=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            max_text_len=max_text_len,
            encoder_n_points=2,
            decoder_n_points=2,
        )
        images = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    else:
        config = GroundingDinoConfig(
            backbone_config=SwinConfig(out_indices=[2, 3, 4]), max_text_len=max_text_len
        )
        images = GroundingDinoImageProcessorPil()
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    return model, GroundingDinoProcessor(image_processor=images, tokenizer=tok)


def depth_anything(*, tiny: bool = True, seed: int = 0):
    """(`DepthAnythingForDepthEstimation`, `DPTImageProcessorPil`) with random weights: ``tiny`` a
    2-layer width-32 DINOv2 on 56-px inputs; otherwise Depth Anything-S's shapes (DINOv2-S, 518 px)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
    )

    if tiny:
        backbone = Dinov2Config(
            image_size=56,
            patch_size=14,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            out_indices=[1, 2],
            reshape_hidden_states=False,
        )
        config = DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=32,
            reassemble_factors=[2, 1],
            neck_hidden_sizes=[16, 32],
            fusion_hidden_size=16,
            head_hidden_size=8,
        )
        side = 56
    else:
        config, side = DepthAnythingConfig(), 518
    images = DPTImageProcessorPil(
        size={"height": side, "width": side},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_pad=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    torch.manual_seed(seed)
    return DepthAnythingForDepthEstimation(config).eval(), images


def rt_detr(labels: list[str] | tuple[str, ...], *, image_size: int = 64, seed: int = 0):
    """(`RTDetrForObjectDetection`, `RTDetrImageProcessorPil`) with random weights: a fixed-label
    detector for the closed-vocabulary backend (ResNet of width 8, one decoder layer)."""
    import torch
    from transformers import (
        RTDetrConfig,
        RTDetrForObjectDetection,
        RTDetrImageProcessorPil,
        RTDetrResNetConfig,
    )

    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_indices=[2, 3, 4],
    )
    config = RTDetrConfig(
        backbone_config=backbone,
        encoder_hidden_dim=16,
        encoder_in_channels=[16, 32, 64],
        encoder_ffn_dim=32,
        encoder_attention_heads=2,
        d_model=16,
        decoder_in_channels=[16] * 3,
        decoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        num_queries=12,
        num_denoising=0,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(seed)
    images = RTDetrImageProcessorPil(size={"height": image_size, "width": image_size})
    return RTDetrForObjectDetection(config).eval(), images


def save(model, processor, out_dir: str) -> str:
    """Write a loadable checkpoint folder (safetensors + processor files); returns ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir
