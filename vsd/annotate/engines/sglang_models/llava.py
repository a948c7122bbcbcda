"""``LlavaLlamaForCausalLM`` whose language model may run in bfloat16.

SGLang 0.5.23 loads LLaVA's CLIP tower in float16 whatever the engine's dtype
(``CLIPVisionModel.from_pretrained(..., torch_dtype=torch.float16)`` in ``llava.py``), so a
bfloat16 engine fails at the projector with ``mat1 and mat2 must have the same dtype, but got Half
and BFloat16`` — on GPUs too. bfloat16 is what the 13B models are trained and stored in, and on
CPU float16 decodes garbage. Two casts fix it and change nothing else: pixel values to the
tower's dtype on the way in, the tower's features to the projector's dtype on the way out.
"""

from __future__ import annotations

from sglang.srt.models.llava import LlavaLlamaForCausalLM as _SGLangLlava


def _cast_inputs_to(dtype_of):
    def hook(module, args, kwargs):
        dtype = dtype_of(module)
        args = tuple(
            a.to(dtype) if hasattr(a, "is_floating_point") and a.is_floating_point() else a for a in args
        )
        return args, kwargs

    return hook


class LlavaLlamaForCausalLM(_SGLangLlava):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.multi_modal_projector.register_forward_pre_hook(
            _cast_inputs_to(lambda m: m.linear_1.weight.dtype), with_kwargs=True
        )

    def load_weights(self, weights):
        super().load_weights(weights)  # builds the (float16) vision tower
        self.vision_tower.register_forward_pre_hook(
            _cast_inputs_to(lambda m: next(m.parameters()).dtype), with_kwargs=True
        )


EntryClass = [LlavaLlamaForCausalLM]
