"""`vsd demo` and what only the demo needs, apart from the product.

run.py              the `vsd demo` command: data ▸ train ▸ export ▸ annotate ▸ evaluate, offline
raw.py              its raw-corpus section: objects found by the tiny detector, then annotated
tiny_detector.py    the committed tiny RT-DETR (`vsd/assets/tiny-detector`): build, config, meta
synthetic_truth.py  the ground truth of the synthetic scenes (every drawn shape, its name and box)

The recipes that build the committed assets are in ``recipes/`` (repository only).
"""
