"""VSD evaluation: caption metrics (pycocoevalcap, as the VSD authors run it), task-1 relation
accuracy / macro-F1 / confusion, the relation stated by generated text, and the report writers.

    from vsd.evaluate import evaluate
    report = evaluate("preds.parquet", "instructions/val.parquet", "out/eval")

Names resolve lazily so `vsd --help` (which imports `vsd.evaluate.commands`) stays instant.
"""

from importlib import import_module

_EXPORTS = {
    "CaptionScorer": "vsd.evaluate.captions",
    "caption_metrics": "vsd.evaluate.captions",
    "classification_metrics": "vsd.evaluate.relation_metrics",
    "sentence_relation_agreement": "vsd.evaluate.relation_metrics",
    "evaluate": "vsd.evaluate.report",
    "write_report": "vsd.evaluate.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vsd.evaluate' has no attribute {name!r}")
