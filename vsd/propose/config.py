"""``ProposeConfig``: how the propose stage finds objects in raw images and picks pairs.

Real model ids belong in the cluster configs (``IDEA-Research/grounding-dino-tiny``,
``google/owlv2-base-patch16-ensemble``, ``depth-anything/Depth-Anything-V2-Small-hf``); the demo
points ``model`` at the committed tiny detector and tests at tiny random checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsd.config import DEVICE, ConfigError, describe

BACKENDS = ("open_vocabulary", "closed_vocabulary")
ORIENTATIONS = ("smaller_subject", "both")
DTYPES = ("auto", "float32", "bfloat16", "float16")

#: What an open-vocabulary detector looks for when a config names nothing: common things of
#: everyday scenes (Visual Genome / COCO heads), a few words each.
DEFAULT_VOCABULARY = [
    "person",
    "dog",
    "cat",
    "horse",
    "bird",
    "car",
    "bus",
    "truck",
    "bicycle",
    "motorcycle",
    "boat",
    "chair",
    "table",
    "sofa",
    "bed",
    "desk",
    "shelf",
    "cup",
    "bottle",
    "plate",
    "bowl",
    "laptop",
    "phone",
    "book",
    "lamp",
    "clock",
    "vase",
    "television",
    "window",
    "door",
    "tree",
    "plant",
    "umbrella",
    "bag",
    "bench",
    "sign",
    "ball",
    "box",
    "pillow",
    "sink",
]


@dataclass
class PairConfig:
    max_pairs: int = describe(
        "max_pairs", 8, ge=0, help="K: at most this many pairs per image (the best-scoring ones)"
    )
    weight_score: float = describe(
        "weight_score",
        1.0,
        ge=0,
        help="weight of the pair's detection confidence (geometric mean of the two scores)",
    )
    weight_size: float = describe(
        "weight_size", 0.5, ge=0, help="weight of the smaller object's size (small specks make poor subjects)"
    )
    weight_proximity: float = describe(
        "weight_proximity",
        0.5,
        ge=0,
        help="weight of closeness (objects far apart rarely have a relation worth saying)",
    )
    size_reference: float = describe(
        "size_reference",
        0.25,
        gt=0,
        help="a box side (sqrt of its area share) at or above which the size term is 1",
    )
    proximity_reference: float = describe(
        "proximity_reference",
        0.5,
        gt=0,
        help="gap between the boxes (image fractions) at or beyond which the proximity term is 0",
    )
    max_pair_iou: float = describe(
        "max_pair_iou",
        0.8,
        ge=0,
        le=1,
        help="skip pairs whose boxes overlap more than this (likely one object found twice)",
    )
    min_score: float = describe(
        "min_score", 0.0, ge=0, le=1, help="only detections at least this confident join pairs"
    )
    orientation: str = describe(
        "orientation",
        "smaller_subject",
        choices=list(ORIENTATIONS),
        help="smaller_subject: one row per pair, the smaller box is the subject (the cup, "
        "not the table); both: both orders, two rows",
    )
    distinct_labels: bool = describe(
        "distinct_labels",
        False,
        help="skip pairs of two objects with the same label (their names cannot tell "
        "them apart in the prompt; the drawn boxes still do)",
    )


@dataclass
class ProposeConfig:
    backend: str = describe(
        "backend",
        "open_vocabulary",
        choices=list(BACKENDS),
        help="open_vocabulary: AutoModelForZeroShotObjectDetection (Grounding DINO, OWLv2) "
        "prompted with `vocabulary`; closed_vocabulary: AutoModelForObjectDetection "
        "(a fine-tuned detector, its own labels)",
    )
    model: str = describe(
        "model",
        "IDEA-Research/grounding-dino-tiny",
        help="detector: hub id, local folder or s3:// prefix (safetensors only)",
    )
    vocabulary: list[str] = describe(
        "vocabulary",
        factory=lambda: list(DEFAULT_VOCABULARY),
        help="open_vocabulary: the object names to look for (each becomes a label "
        "and the name in prompts); closed_vocabulary: keep only these labels "
        "(empty = all of the model's)",
    )
    score_threshold: float = describe(
        "score_threshold", 0.3, ge=0, le=1, help="drop detections scored below this"
    )
    nms_iou: float = describe(
        "nms_iou",
        0.7,
        gt=0,
        le=1,
        help="non-maximum suppression: drop a box overlapping a better one more than this (1.0 = off)",
    )
    class_agnostic_nms: bool = describe(
        "class_agnostic_nms", True, help="NMS across labels (one object, one label) instead of per label"
    )
    max_detections: int = describe(
        "max_detections", 20, ge=1, help="keep at most this many detections per image"
    )
    min_box_size: float = describe(
        "min_box_size",
        0.02,
        ge=0,
        lt=1,
        help="drop boxes whose width or height is below this fraction of the image side",
    )
    pairs: PairConfig = describe("pairs", factory=PairConfig, help="which detected pairs to describe")
    depth: bool = describe(
        "depth", False, help="also run a monocular depth model and record each box's median depth"
    )
    depth_model: str = describe(
        "depth_model",
        "depth-anything/Depth-Anything-V2-Small-hf",
        help="AutoModelForDepthEstimation checkpoint (hub id, folder or s3://)",
    )
    device: str = describe("device", "auto", pattern=DEVICE, help="auto (cuda if present), cpu, cuda, cuda:N")
    dtype: str = describe(
        "dtype", "auto", choices=list(DTYPES), help="auto: bfloat16 on CUDA, float32 on CPU"
    )
    batch_size: int = describe(
        "batch_size", 8, ge=1, help="images per forward pass (detector and depth model)"
    )

    def validate(self) -> None:
        if not self.model.strip():
            raise ConfigError("model: must name a detector checkpoint")
        if self.depth and not self.depth_model.strip():
            raise ConfigError("depth_model: must name a depth checkpoint when depth is on")
        if self.backend == "open_vocabulary" and not self.vocabulary:
            raise ConfigError("vocabulary: open_vocabulary needs at least one object name")
        cleaned = [v.strip() for v in self.vocabulary]
        if any(not v for v in cleaned):
            raise ConfigError("vocabulary: names must be non-empty")
        if len(set(cleaned)) != len(cleaned):
            dup = next(v for v in cleaned if cleaned.count(v) > 1)
            raise ConfigError(f"vocabulary: {dup!r} is listed twice")
        self.vocabulary = cleaned
