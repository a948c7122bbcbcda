"""Samples (image, prompt, answer) -> a padded LLaVA training batch whose labels are the answers only.

The prompt is rendered with the model's own chat template and the processor expands ``<image>``
into the model's image tokens, so training sees exactly what serving sends. Labels are -100
everywhere except the assistant's answer (and its end-of-turn token): the model learns to answer,
not to reproduce prompts. Truncation never cuts image tokens (the processor's pixel features
must match their count); it cuts the answer's tail. A sample whose prompt alone does not fit
keeps its place in the batch with no labels (so every rank still runs the same number of
micro-steps) and is counted in ``num_dropped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100

# Keys of a collated batch that are bookkeeping, not model inputs.
META_KEYS = ("labels", "num_dropped", "num_truncated")


def conversation(prompt: str, answer: str | None) -> list[dict]:
    """A single-turn LLaVA conversation in the processor's chat-template format."""
    turns = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if answer is not None:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return turns


@dataclass
class LlavaCollator:
    """Callable collate_fn: ``list[{"image": PIL.Image, "prompt": str, "answer": str}] -> batch``."""

    processor: Any
    max_length: int

    def __post_init__(self) -> None:
        tok = self.processor.tokenizer
        self.image_token = getattr(self.processor, "image_token", "<image>")
        self.image_token_id = tok.convert_tokens_to_ids(self.image_token)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    # -- per sample -----------------------------------------------------------------------------
    def _texts(self, prompt: str, answer: str) -> tuple[str, str]:
        full = self.processor.apply_chat_template(conversation(prompt, answer), tokenize=False)
        head = self.processor.apply_chat_template(
            conversation(prompt, None), tokenize=False, add_generation_prompt=True
        )
        return full, head

    def _prompt_length(self, ids: list[int], head: str) -> int:
        """Tokens of ``ids`` that belong to the prompt: the generation prompt tokenized with the
        image tokens expanded as in ``ids``, compared token by token (a template whose prompt is
        not a token-exact prefix still masks at the first difference)."""
        n_image = sum(1 for t in ids if t == self.image_token_id)
        n_tags = head.count(self.image_token)
        expanded = (
            head.replace(self.image_token, self.image_token * (n_image // max(n_tags, 1))) if n_tags else head
        )
        head_ids = self.processor.tokenizer(expanded, add_special_tokens=True)["input_ids"]
        n = 0
        for a, b in zip(head_ids, ids):
            if a != b:
                break
            n += 1
        return n

    def _fit(self, ids: list[int], n_prompt: int) -> tuple[list[int], list[int], str]:
        """(input ids, labels, outcome) within max_length; outcome is ok | truncated | dropped."""
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
        if len(ids) <= self.max_length:
            return ids, labels, "ok"
        if n_prompt < self.max_length:  # the answer's tail goes; the image and prompt stay whole
            return ids[: self.max_length], labels[: self.max_length], "truncated"
        # The prompt alone is too long: drop text tokens from the prompt's end, never image tokens.
        keep, excess = [], len(ids) - self.max_length
        for tok in reversed(ids):
            if excess > 0 and tok != self.image_token_id:
                excess -= 1
                continue
            keep.append(tok)
        keep.reverse()
        if excess > 0 or len(keep) > self.max_length:
            raise ValueError(f"max_length {self.max_length} is shorter than the image tokens of one sample")
        return keep, [IGNORE_INDEX] * len(keep), "dropped"

    # -- batch ----------------------------------------------------------------------------------
    def __call__(self, samples: list[dict]) -> dict:
        import torch

        texts, heads = zip(*(self._texts(s["prompt"], s["answer"]) for s in samples))
        enc = self.processor(
            text=list(texts), images=[s["image"] for s in samples], padding=True, return_tensors="pt"
        )
        rows, outcomes = [], []
        for i, head in enumerate(heads):
            mask = enc["attention_mask"][i].bool()
            ids = enc["input_ids"][i][mask].tolist()  # padding side does not matter
            ids, labels, outcome = self._fit(ids, self._prompt_length(ids, head))
            rows.append((ids, labels))
            outcomes.append(outcome)
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            attention[i, : len(ids)] = 1
        batch = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        batch.update(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            num_dropped=outcomes.count("dropped"),
            num_truncated=outcomes.count("truncated"),
        )
        return batch


def model_inputs(batch: dict) -> dict:
    """The keys of a collated batch the model's forward takes."""
    return {k: v for k, v in batch.items() if k not in META_KEYS}
