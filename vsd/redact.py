"""Redaction by allow-list: what a dumped config, a run record or a log line may carry.

A deny-list of "secret-looking" key names misses ``authorization``, ``key`` or a password inside a
URL, and hides harmless fields (``max_new_tokens`` contains "token"). So it is the other way round:
every *typed* config field is shown (none of them is a credential: credentials only ever come from
the environment), free-form mappings that are passed through to another library (``engine_args``)
show only keys known to be settings, and every string has the user-info of a URL removed
(``https://user:pass@host`` -> ``https://<redacted>@host``) and signed-URL query parameters dropped.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

REDACTED = "<redacted>"

# sglang.Engine / vLLM-style settings that configure a server and carry no secret.
SAFE_ENGINE_ARGS = frozenset(
    {
        "tp_size",
        "dp_size",
        "pp_size",
        "ep_size",
        "mem_fraction_static",
        "chunked_prefill_size",
        "max_running_requests",
        "max_total_tokens",
        "max_prefill_tokens",
        "context_length",
        "attention_backend",
        "sampling_backend",
        "disable_cuda_graph",
        "cuda_graph_max_bs",
        "disable_overlap_schedule",
        "disable_radix_cache",
        "skip_server_warmup",
        "schedule_policy",
        "schedule_conservativeness",
        "random_seed",
        "dtype",
        "device",
        "kv_cache_dtype",
        "quantization",
        "enable_torch_compile",
        "torch_compile_max_bs",
        "log_level",
        "stream_interval",
        "grammar_backend",
        "constrained_json_whitespace_pattern",
        "watchdog_timeout",
        "base_gpu_id",
        "gpu_id_step",
        "nnodes",
        "node_rank",
        "trust_remote_code",
        "load_format",
    }
)
FREEFORM_ALLOWED = {"engine_args": SAFE_ENGINE_ARGS}

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/@\s]+)@")
_SIGNED = re.compile(
    r"([?&](?:X-Amz-[A-Za-z-]+|Signature|sig|se|sp|sv|token|access_token|key|api_key)=)[^&\s]*", re.IGNORECASE
)


def redact_text(text: str) -> str:
    """A string without URL credentials or signed-URL parameters."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _SIGNED.sub(lambda m: m.group(1) + REDACTED, text)


def _value(value: Any, allowed: frozenset[str] | None = None) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        if allowed is not None:
            return {k: (_value(v) if k in allowed else REDACTED) for k, v in value.items()}
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return value


def redact_config(cfg: Any) -> dict:
    """A typed config as a plain dict fit to publish: see the module docstring."""
    out: dict = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = redact_config(value)
        elif f.name in FREEFORM_ALLOWED:
            out[f.name] = _value(value, FREEFORM_ALLOWED[f.name])
        elif isinstance(value, dict):  # any other free-form mapping: keys kept, values redacted
            out[f.name] = {k: REDACTED for k in value}
        else:
            out[f.name] = _value(value)
    return out
