"""Load a LLaVA checkpoint (hub id, local dir, ``s3://`` prefix or ``tiny:`` name) with its processor.

The class comes from the checkpoint's config, so ``llava-hf/llava-1.5-13b-hf`` and the
high-resolution ``llava-hf/llava-v1.6-vicuna-13b-hf`` go through one call. Two safety rules hold
everywhere a model is loaded: weights are safetensors only (a pickle ``.bin`` can run code on load)
and ``trust_remote_code`` is off unless a config turns it on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile

from vsd import storage
from vsd.errors import VSDError
from vsd.model.tiny import LLAVA_CHAT_TEMPLATE, TEXT_CHAT_TEMPLATE, cache_root, resolve_tiny_name

log = logging.getLogger(__name__)

# model_type -> transformers class name; anything else with a causal-LM head loads as a text LM.
VISION_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
}
DTYPES = ("auto", "checkpoint", "float32", "bfloat16", "float16")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


# --------------------------------------------------------------------------- locating the files


def _download_dir(uri: str) -> str:
    """Copy an ``s3://`` prefix into the local cache once; the cache key includes every object's
    size and mtime, so a re-upload under the same prefix is fetched again."""
    fs, base = storage.resolve(uri)
    files = storage.list_files(uri)
    if not files:
        raise VSDError(f"model: nothing found under {uri}")
    import pyarrow.fs as pafs

    infos = fs.get_file_info([storage.resolve(f)[1] for f in files])
    fingerprint = hashlib.sha256(uri.encode())
    root = base.rstrip("/") + "/"
    rels = {}
    for info in infos:
        rel = info.path[len(root) :] if info.path.startswith(root) else ""
        if not rel or any(part in ("", ".", "..") for part in rel.split("/")):  # m/../x would land outside
            raise VSDError(
                f"model: {uri} holds an object key that leaves its prefix ({info.path!r}); refused"
            )
        rels[info.path] = rel
        fingerprint.update(f"{info.path}|{info.size}|{info.mtime_ns}".encode())
    final = os.path.join(cache_root(), "s3", fingerprint.hexdigest()[:20])
    if os.path.isdir(final):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".dl-", dir=os.path.dirname(final))
    try:
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            dest = os.path.join(tmp, rels[info.path])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, length=8 << 20)
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent download finished first; same bytes
            if not os.path.isdir(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def localize(name_or_path: str) -> str:
    """A local directory for ``s3://`` prefixes, ``file://`` and ``tiny:`` names; hub ids unchanged."""
    name = str(name_or_path)
    tiny = resolve_tiny_name(name)
    if tiny is not None:
        return tiny
    if storage.is_s3(name):
        return _download_dir(name)
    if name.startswith("file://"):
        name = name[len("file://") :]
    local = os.path.expanduser(name)
    if os.path.exists(local):
        return os.path.abspath(local)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise VSDError(f"model: {name_or_path} does not exist (and is not a hub id like org/name)")
    return name  # a hub id


def check_safetensors(path: str, what: str = "model") -> None:
    """Refuse a local checkpoint whose weights are not all safetensors (loading a pickle runs code):
    pickle-only weights, no weights, or a ``*.safetensors.index.json`` naming any shard that is not
    a ``.safetensors`` file inside the directory."""
    if not os.path.isdir(path):
        return
    names = os.listdir(path)
    for index in sorted(n for n in names if n.endswith(".index.json")):
        _check_index(path, index, what)
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise VSDError(
            f"{what}: {path} has only pickle weights ({pickles[0]}); only safetensors are loaded "
            "— convert it with save_pretrained(..., safe_serialization=True)"
        )
    raise VSDError(f"{what}: {path} has no .safetensors weights")


def _check_index(path: str, index: str, what: str) -> None:
    import json

    try:
        with open(os.path.join(path, index), encoding="utf-8") as f:
            shards = set(json.load(f).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError) as exc:
        raise VSDError(
            f"{what}: {index} in {path} is not a readable weight index ({type(exc).__name__})"
        ) from None
    for shard in sorted(map(str, shards)):
        if not shard.endswith(".safetensors") or os.path.basename(shard) != shard:
            raise VSDError(
                f"{what}: {index} in {path} names shard {shard!r}; only .safetensors files in the "
                "model's own directory are loaded"
            )
        if not os.path.isfile(os.path.join(path, shard)):
            raise VSDError(f"{what}: {index} in {path} names shard {shard!r}, which is missing")


# --------------------------------------------------------------------------- dtype / class choice


def torch_dtype(dtype: str, device: str):
    """``auto``: bfloat16 on CUDA, float32 elsewhere; ``checkpoint``: as stored; else by name."""
    import torch

    if dtype not in DTYPES:
        raise VSDError(f"model.dtype: must be one of {list(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype == "checkpoint":
        return "auto"
    return getattr(torch, dtype)


def model_class(config):
    """The transformers class for a config: LLaVA / LLaVA-NeXT, else a causal LM (refinement)."""
    import transformers

    model_type = getattr(config, "model_type", None)
    if model_type in VISION_CLASSES:
        return getattr(transformers, VISION_CLASSES[model_type])
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs):
        return transformers.AutoModelForCausalLM
    raise VSDError(
        f"model: unsupported model_type {model_type!r} (supported: {', '.join(VISION_CLASSES)} "
        "or a causal LM)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- public API


def load_config(name_or_path: str, *, trust_remote_code: bool = False):
    from transformers import AutoConfig

    path = localize(name_or_path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        hint = " (set trust_remote_code only for code you trust)" if not trust_remote_code else ""
        raise VSDError(f"model: cannot read the config of {name_or_path}: {_first_line(exc)}{hint}") from None


def load_processor(name_or_path: str, *, trust_remote_code: bool = False, config=None):
    """The processor (LLaVA) or tokenizer (text LM), with a chat template guaranteed: checkpoints
    that ship none get the Vicuna v1 one (what llava-1.5 / v1.6-vicuna were tuned on; text-only for
    a text LM)."""
    from transformers import AutoProcessor, AutoTokenizer

    path = localize(name_or_path)
    config = config or load_config(path, trust_remote_code=trust_remote_code)
    vision = config.model_type in VISION_CLASSES
    loader = AutoProcessor if vision else AutoTokenizer
    try:
        processor = loader.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise VSDError(f"model: cannot load the processor of {name_or_path}: {_first_line(exc)}") from None
    if getattr(processor, "chat_template", None) is None:
        log.warning("%s ships no chat template; using the Vicuna v1 template", name_or_path)
        processor.chat_template = LLAVA_CHAT_TEMPLATE if vision else TEXT_CHAT_TEMPLATE
    return processor


def load_adapter(model, adapter: str, *, is_trainable: bool = False):
    """Wrap ``model`` with a PEFT LoRA adapter from a local dir or ``s3://`` prefix (safetensors only)."""
    from peft import PeftModel

    path = localize(adapter)
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise VSDError(f"adapter: {adapter} has no adapter_config.json (not a PEFT adapter directory)")
    check_safetensors(path, "adapter")
    try:
        return PeftModel.from_pretrained(model, path, is_trainable=is_trainable, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise VSDError(f"adapter: cannot load {adapter}: {_first_line(exc)}") from None


def load_model(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
    adapter: str | None = None,
):
    """``(model, processor)`` in eval mode on ``device``.

    ``name_or_path``: hub id, local dir, ``s3://`` prefix (downloaded to ``VSD_CACHE_DIR`` once) or
    ``tiny:llava`` / ``tiny:llava_next`` / ``tiny:text-lm`` (built and cached). ``adapter``: an
    optional PEFT adapter dir/prefix applied on top (not merged). For a text LM the processor is
    its tokenizer.
    """
    path = localize(name_or_path)
    check_safetensors(path)
    config = load_config(path, trust_remote_code=trust_remote_code)
    cls = model_class(config)
    # Only the Auto classes take trust_remote_code; concrete LLaVA classes never run hub code.
    extra = {"trust_remote_code": trust_remote_code} if cls.__name__.startswith("Auto") else {}
    try:
        model = cls.from_pretrained(path, dtype=torch_dtype(dtype, device), use_safetensors=True, **extra)
    except (OSError, ValueError) as exc:
        raise VSDError(f"model: cannot load {name_or_path}: {_first_line(exc)}") from None
    processor = load_processor(path, trust_remote_code=trust_remote_code, config=config)
    if adapter:
        model = load_adapter(model, adapter)
    model.to(device)
    model.eval()
    return model, processor
