"""What the detector and depth backends share: checkpoint location, device, dtype, batching.

Loading follows the project's rules (`vsd.model.loader`): ``s3://`` prefixes are copied to the
local cache once, weights are safetensors only, remote code is never run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from vsd.errors import VSDError
from vsd.model.loader import check_safetensors, localize, torch_dtype


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VSDError(f"propose.device: {device} asked for but no CUDA device is visible")
    return device


def resolve_dtype(dtype: str, device: str):
    return torch_dtype(dtype, device)


def local_checkpoint(name: str, what: str) -> str:
    """A loadable name for ``name``: a local folder (downloaded from s3:// if needed) or a hub id."""
    try:
        path = localize(name)
    except VSDError as exc:  # the loader says "model: ..."; name the field the user set
        raise VSDError(f"{what}: {str(exc).removeprefix('model: ')}") from None
    check_safetensors(path, what)
    return path


def load_pretrained(auto_class, name: str, what: str, device: str, dtype):
    """``auto_class.from_pretrained`` with the safety rules, in eval mode on ``device``."""
    path = local_checkpoint(name, what)
    try:
        model = auto_class.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VSDError(f"{what}: cannot load {name} with {auto_class.__name__}: {first}") from exc
    return model.to(device=device, dtype=dtype).eval(), path


def to_model(inputs, device: str, dtype) -> dict:
    """Processor output on the model's device; floating tensors (pixels) in the model's dtype,
    integer ones (token ids, masks) untouched."""
    out = {}
    for key, value in inputs.items():
        if hasattr(value, "to"):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        out[key] = value
    return out


def size_groups(images: Sequence, batch_size: int) -> Iterator[list[int]]:
    """Indices of ``images`` in batches of one size each, in first-seen order.

    Why: a processor pads a mixed-size batch to its largest image (or cannot stack it at all), and
    padding changes what the model sees, so an image's detections would depend on its batch-mates.
    One size per batch keeps each image's result a function of the image alone, so a rerun with a
    different batching gives the same detections.
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(im.size, []).append(i)
    for idx in by_size.values():
        for start in range(0, len(idx), batch_size):
            yield idx[start : start + batch_size]


def rgb(images: Sequence) -> list:
    """PIL images in RGB (a greyscale or RGBA corpus image would otherwise fail in the processor)."""
    return [im if im.mode == "RGB" else im.convert("RGB") for im in images]
