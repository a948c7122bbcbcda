"""Open-vocabulary backends (``AutoModelForZeroShotObjectDetection``): OWL-ViT / OWLv2, Grounding DINO.

Both are prompted with `ProposeConfig.vocabulary` and every detection's label is one of those
names exactly (it becomes the object's name in the task prompts), so labels are read from scores,
not decoded from tokens:

* OWL: one text query per name; a box's label is the query with the highest sigmoid score.
  OWLv2 pads each image to a square before resizing, so its boxes are relative to that square and
  are rescaled to the image here; OWL-ViT resizes without padding.
* Grounding DINO: the names are joined into ``"red circle. blue square."`` prompts (split into
  several prompts when the tokens exceed the model's ``max_text_len``); a name's score is the
  highest token score inside its span, a box takes the best name. Boxes are relative to the
  image itself (the model's position encoding follows the pixel mask, so batch padding does not
  shift them).
"""

from __future__ import annotations

from vsd.errors import VSDError
from vsd.propose.config import ProposeConfig
from vsd.propose.detectors import Detector

OWL_TYPES = ("owlvit", "owlv2")
GROUNDING_TYPES = ("grounding-dino", "mm-grounding-dino")


def _candidates(scores, labels, boxes, threshold: float, limit: int):
    """Candidates of one image above ``threshold``, at most ``limit`` best (tensors -> lists)."""
    import torch

    keep = torch.nonzero(scores >= threshold).flatten()
    if keep.numel() > limit:
        keep = keep[torch.topk(scores[keep], limit).indices]
    return boxes[keep].tolist(), scores[keep].tolist(), labels[keep].tolist()


def _xyxy(cxcywh):
    import torch

    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


class _ZeroShot(Detector):
    def __init__(self, model, processor, cfg: ProposeConfig, device: str = "cpu"):
        super().__init__(model, processor, cfg, device)
        self.names = list(cfg.vocabulary)
        # NMS is quadratic in Python: keep the best few per image before it (far above the cap).
        self.limit = max(100, 10 * cfg.max_detections)


class OwlDetector(_ZeroShot):
    def _detect_batch(self, batch: list):
        import torch

        from vsd.propose import runtime

        inputs = self.processor(text=[self.names] * len(batch), images=batch, return_tensors="pt")
        outputs = self.model(**runtime.to_model(inputs, self.device, self.dtype))
        probs = torch.sigmoid(outputs.logits.float())  # (batch, patches, names)
        scores, labels = probs.max(dim=-1)
        boxes = _xyxy(outputs.pred_boxes.float())
        out = []
        for i, image in enumerate(batch):
            b = boxes[i]
            if self.model.config.model_type == "owlv2":  # relative to the padded square
                side = max(image.size)
                b = b * torch.tensor([side / image.width, side / image.height] * 2, device=b.device)
            bx, sc, lab = _candidates(scores[i], labels[i], b, self.cfg.score_threshold, self.limit)
            out.append((bx, sc, [self.names[j] for j in lab]))
        return out


class GroundingDinoDetector(_ZeroShot):
    def __init__(self, model, processor, cfg: ProposeConfig, device: str = "cpu"):
        super().__init__(model, processor, cfg, device)
        self.prompts = self._prompts(int(getattr(model.config, "max_text_len", 256)))

    def _spans(self, names: list[str]) -> tuple[str, list[list[int]], int]:
        """The prompt text for ``names``, per name the token positions inside its span, and the
        prompt's length in tokens."""
        text, starts = "", []
        for name in names:
            starts.append(len(text))
            text += name.lower() + ". "
        text = text.rstrip()
        enc = self.processor.tokenizer(text, return_offsets_mapping=True)
        spans = []
        for name, start in zip(names, starts):
            end = start + len(name)
            idx = [t for t, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
            if not idx:
                raise VSDError(
                    f"propose.vocabulary: {name!r} produces no tokens for the detector's tokenizer"
                )
            spans.append(idx)
        return text, spans, len(enc["input_ids"])

    def _prompts(self, max_len: int) -> list[tuple[str, list[str], list[list[int]]]]:
        """Greedy packing of the vocabulary into prompts that fit ``max_len`` tokens, names in order."""
        prompts, current = [], []
        for name in self.names:
            trial = current + [name]
            if self._spans(trial)[2] <= max_len:
                current = trial
                continue
            if not current:
                raise VSDError(
                    f"propose.vocabulary: {name!r} alone exceeds the detector's {max_len} text tokens"
                )
            prompts.append(current)
            current = [name]
        prompts.append(current)
        out = []
        for names in prompts:
            text, spans, _ = self._spans(names)
            out.append((text, names, spans))
        return out

    def _detect_batch(self, batch: list):
        import torch

        from vsd.propose import runtime

        per_image = [([], [], []) for _ in batch]
        for text, names, spans in self.prompts:
            inputs = self.processor(images=batch, text=[text] * len(batch), return_tensors="pt")
            outputs = self.model(**runtime.to_model(inputs, self.device, self.dtype))
            probs = torch.sigmoid(outputs.logits.float())  # (batch, queries, text tokens)
            per_name = torch.stack([probs[..., idx].max(dim=-1).values for idx in spans], dim=-1)
            scores, labels = per_name.max(dim=-1)
            boxes = _xyxy(outputs.pred_boxes.float())
            for i in range(len(batch)):
                bx, sc, lab = _candidates(
                    scores[i], labels[i], boxes[i], self.cfg.score_threshold, self.limit
                )
                per_image[i][0].extend(bx)
                per_image[i][1].extend(sc)
                per_image[i][2].extend(names[j] for j in lab)
        return per_image


def zero_shot_detector(model, processor, cfg: ProposeConfig, device: str = "cpu") -> Detector:
    """The backend for the checkpoint's architecture."""
    model_type = model.config.model_type
    if model_type in OWL_TYPES:
        return OwlDetector(model, processor, cfg, device)
    if model_type in GROUNDING_TYPES:
        return GroundingDinoDetector(model, processor, cfg, device)
    raise VSDError(
        f"propose.model: open_vocabulary supports {', '.join(OWL_TYPES + GROUNDING_TYPES)}, "
        f"got model_type {model_type!r} (a fixed-label detector: backend closed_vocabulary)"
    )
