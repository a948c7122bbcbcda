"""The demo's fine-tuned model through the real SGLang engine: `vsd demo --engine sglang` reaches
held-out task-1 accuracy within 3 points of the hf engine on the same trained model.

One training run (the full demo: 600 scenes, 150 LoRA steps), then the same checkpoint exported
in the HF layout and annotated by the hf engine; evaluated on the same 90 held-out scenes."""

from __future__ import annotations

import json
from pathlib import Path

from vsd.cli import main


def test_demo_accuracy_sglang_vs_hf(tmp_path, capsys):
    import ray

    from vsd.demo import BASE_MODEL, CONFIGS, annotate
    from vsd.evaluate.report import evaluate
    from vsd.model.export import merge_and_export

    if ray.is_initialized():  # the demo starts its own local cluster
        ray.shutdown()
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--engine", "sglang"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == "sglang" and report["annotation_counts"]["ok"] == report["heldout_scenes"]
    sglang_acc = report["relation_accuracy"]

    hf_model = tmp_path / "hf-model"
    merge_and_export(str(BASE_MODEL), str(Path(report["train_checkpoint"]) / "adapter"), str(hf_model))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        annotate(str(CONFIGS / "demo-annotate.yaml"), out / "data" / "heldout-scenes", hf_model, tmp_path / "hf-ann")
    finally:
        ray.shutdown()
    hf = evaluate(str(tmp_path / "hf-ann"), str(out / "data" / "heldout-instructions" / "instructions.parquet"),
                  str(tmp_path / "hf-report"))
    print(f"demo held-out task-1 accuracy: sglang {sglang_acc:.3f}, hf {hf['relation_accuracy']:.3f}")
    assert sglang_acc > 0.5  # it learned (chance 0.111)
    assert abs(sglang_acc - hf["relation_accuracy"]) <= 0.03
