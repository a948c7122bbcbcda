"""Detection backends: an image batch in, per image a list of `Detection` (normalised xyxy) out.

`ClosedVocabularyDetector` runs any ``AutoModelForObjectDetection`` checkpoint (a fine-tuned
DETR-family detector such as the demo's tiny RT-DETR) and names objects with the model's own
labels; the open-vocabulary backends live in `zero_shot`; `load.load_detector` picks by config.
Everything runs under ``torch.inference_mode`` in eval mode and goes through
`detections.finalize`, so a rerun yields identical detections in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

from vsd.errors import VSDError
from vsd.propose import runtime
from vsd.propose.config import ProposeConfig
from vsd.propose.detections import Detection, finalize


class Detector:
    """Shared batching and filtering; subclasses implement `_detect_batch` (raw candidates)."""

    def __init__(self, model, processor, cfg: ProposeConfig, device: str = "cpu"):
        self.model, self.processor, self.cfg = model, processor, cfg
        self.device = device
        self.dtype = next(model.parameters()).dtype

    def detect(self, images: Sequence) -> list[list[Detection]]:
        """Detections of each image, in input order (PIL images; any mode, any size)."""
        import torch

        images = runtime.rgb(images)
        out: list = [None] * len(images)
        with torch.inference_mode():
            for group in runtime.size_groups(images, self.cfg.batch_size):
                for i, (boxes, scores, labels) in zip(group, self._detect_batch([images[i] for i in group])):
                    out[i] = self._finalize(boxes, scores, labels)
        return out

    def _finalize(self, boxes, scores, labels) -> list[Detection]:
        c = self.cfg
        return finalize(
            boxes,
            scores,
            labels,
            score_threshold=c.score_threshold,
            nms_iou=c.nms_iou,
            class_agnostic=c.class_agnostic_nms,
            min_box_size=c.min_box_size,
            max_detections=c.max_detections,
        )

    def _detect_batch(self, batch: list) -> list[tuple[list, list, list]]:
        raise NotImplementedError


class ClosedVocabularyDetector(Detector):
    """A detector trained on a fixed label set (``config.id2label``); `ProposeConfig.vocabulary`,
    when set, keeps only those labels."""

    def __init__(self, model, processor, cfg: ProposeConfig, device: str = "cpu"):
        super().__init__(model, processor, cfg, device)
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}
        wanted = set(cfg.vocabulary)
        unknown = sorted(wanted - set(self.id2label.values()))
        if cfg.vocabulary and len(unknown) == len(wanted):
            raise VSDError(
                f"propose.vocabulary: none of {unknown[:5]} is a label of the detector "
                f"(labels: {sorted(self.id2label.values())[:8]} ...)"
            )
        self.keep = wanted or None

    def _detect_batch(self, batch: list) -> list[tuple[list, list, list]]:
        inputs = runtime.to_model(self.processor(images=batch, return_tensors="pt"), self.device, self.dtype)
        outputs = self.model(**inputs)
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        # No target sizes: the boxes stay relative to the image (batches hold one image size, so
        # nothing is padded and relative = normalised xyxy).
        results = self.processor.post_process_object_detection(outputs, threshold=self.cfg.score_threshold)
        out = []
        for res in results:
            labels = [self.id2label[int(i)] for i in res["labels"].tolist()]
            rows = [
                (b, s, lab)
                for b, s, lab in zip(res["boxes"].tolist(), res["scores"].tolist(), labels)
                if self.keep is None or lab in self.keep
            ]
            out.append(([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
        return out
