"""The backend registry: a backend defined here, outside vsd/, is one registry line away from a run.

The test backend ("echo") brings the pieces a real one brings -- its ``engine.echo.*`` options,
an image entry point, a text entry point, a process title and a preflight check -- and is
registered with one line (``BACKENDS["echo"] = ...``) before vsd builds its config classes, in a
fresh interpreter: nothing else in vsd/ is edited, yet the config loads (``engine.kind: echo``,
``stages.refine.mode: echo``), preflight runs its check, and the generate and refine entry
points answer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from vsd.annotate.engines.base import Answer, ImageRequest, ImageResult, account, check_requests, pil_image
from vsd.annotate.engines.config import EngineOptions
from vsd.config import ConfigError, describe
from vsd.refine.base import GuardedRefiner, RewriteRequest

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class EchoOptions(EngineOptions):
    """``engine.echo.*``."""

    suffix: str = describe("suffix", "", help="appended to every answer")

    def validate(self) -> None:
        if len(self.suffix) > 8:
            raise ConfigError(f"suffix: at most 8 characters, got {self.suffix!r}")


class EchoEngine:
    """Answers each prompt with the image's size and the prompt's task (deterministic, no model)."""

    name = "echo"

    def __init__(self, cfg: Any):
        self.suffix = cfg.echo.suffix

    def generate(self, batch: list[ImageRequest]) -> list[ImageResult]:
        check_requests(batch)
        results = []
        for req in batch:
            width, height = pil_image(req.image, req.key).size
            answers = [Answer(f"{width}x{height} task {p.task} {self.suffix}") for p in req.prompts]
            results.append(ImageResult(req.key, answers))
        return account(batch, results)

    def close(self) -> None:
        pass


class EchoRefiner(GuardedRefiner):
    """Offers the sentence with its first letter lower-cased, then the sentence itself."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def _candidates(self, requests: Sequence[RewriteRequest]) -> list[list[str]]:
        return [[r.sentence[:1].lower() + r.sentence[1:], r.sentence] for r in requests]


def echo_preflight(cfg: Any) -> None:
    """Refuses a suffix naming a place: the check runs before Ray, in ``vsd.preflight``."""
    from vsd.preflight import PreflightError

    if cfg.engine.kind == "echo" and cfg.engine.echo.suffix.startswith("/"):
        raise PreflightError(f"engine.echo.suffix: {cfg.engine.echo.suffix}: not a place")


SCRIPT = """
import json, sys
from vsd.backends import BACKENDS, Backend
BACKENDS["echo"] = Backend(
    "a test backend", options="tests.test_backends:EchoOptions", engine="tests.test_backends:EchoEngine",
    refiner="tests.test_backends:EchoRefiner", process_titles=("echo::",),
    preflight="tests.test_backends:echo_preflight",
)
from vsd.annotate.config import load_config
from vsd.annotate.engine_watch import ENGINE_TITLES
from vsd.annotate.engines import make_engine
from vsd.annotate.engines.base import ImageRequest, Prompt
from vsd.config import ConfigError, help_text
from vsd.annotate.config import AnnotateConfig
from vsd.preflight import check_annotate
from vsd.refine import RefineItem, make_refiner

images, out, model, suffix = sys.argv[1:5]
report = {"titles": list(ENGINE_TITLES), "help": "engine.echo.suffix (str" in help_text(AnnotateConfig)}
overrides = [f"input.uri={images}", f"output={out}", "engine.kind=echo", f"engine.model={model}",
             "stages.refine.mode=echo", f"stages.refine.model={model}"]
try:
    cfg = load_config(None, [*overrides, f"engine.echo.suffix={suffix}"])
    check_annotate(cfg)
except Exception as exc:
    print(json.dumps({**report, "error": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
with open(f"{images}/a.png", "rb") as f:
    png = f.read()
[result] = make_engine(cfg.engine).generate([ImageRequest("a", png, [Prompt(2, "Describe."), Prompt(3, "More.")])])
[outcome] = make_refiner(cfg.stages.refine).refine([RefineItem("cup", "plate", "left of", ["The cup is left of the plate."])])
report.update(answers=[a.text for a in result.answers], refined=outcome.sentences, status=outcome.status)
print(json.dumps(report))
"""


def run_echo(tmp_path: Path, suffix: str) -> dict:
    images, model = tmp_path / "images", tmp_path / "echo-model"
    if not images.exists():
        images.mkdir()
        model.mkdir()
        Image.new("RGB", (12, 8), "red").save(images / "a.png")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [str(images), str(tmp_path / "out"), str(model), suffix]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_backend_defined_outside_vsd_runs_from_one_registry_line(tmp_path):
    report = run_echo(tmp_path, "ok")
    assert "error" not in report, report
    assert report["titles"] == ["sglang::", "echo::"] and report["help"]
    assert report["answers"] == ["12x8 task 2 ok", "12x8 task 3 ok"]
    assert report["refined"] == ["the cup is left of the plate."] and report["status"] == "refined"


def test_the_registered_backend_checks_its_options_and_its_preflight(tmp_path):
    assert run_echo(tmp_path, "/tmp")["error"] == "PreflightError: engine.echo.suffix: /tmp: not a place"
    error = run_echo(tmp_path, "much-too-long")["error"]
    assert error == "ConfigError: engine.echo.suffix: at most 8 characters, got 'much-too-long'"
