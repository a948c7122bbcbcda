"""Paths mean what the user typed: made absolute on the driver, input and output kept apart.

A relative path resolved inside a Ray task means the worker's working folder, not the user's
(on a cluster started elsewhere the Parquet landed there while the intended root got only the
card). So every local path of an annotate config is made absolute before any task sees it. And an
output inside its input (or the input inside the output, or both the same folder -- by any spelling
or symlink) would make each night annotate the run's own bookkeeping as images: refused before Ray
starts, with one line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vsd import storage
from vsd.config import ConfigError

if TYPE_CHECKING:
    from vsd.annotate.config import AnnotateConfig

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".gz")


def absolute(path: str) -> str:
    """A local path made absolute (``~`` expanded); ``s3://`` and other URIs unchanged."""
    if not path or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def _model_path(model: str) -> str:
    """A model that names a local folder becomes absolute; a hub id (``org/name``) or a built-in
    name (``tiny:llava``) stays as given."""
    if not model or "://" in model or ":" in model:
        return model
    if model.startswith((".", "/", "~")) or os.path.exists(model):
        return absolute(model)
    return model


def make_absolute(cfg: AnnotateConfig) -> None:
    """Every local path of ``cfg``, absolute (in place)."""
    cfg.input.uri = absolute(cfg.input.uri)
    cfg.output = absolute(cfg.output)
    cfg.input.image_dir = absolute(cfg.input.image_dir)
    cfg.input.vsd2 = absolute(cfg.input.vsd2)
    cfg.input.allowed_roots = [absolute(r) for r in cfg.input.allowed_roots]
    cfg.engine.model = _model_path(cfg.engine.model)
    if cfg.engine.adapter:
        cfg.engine.adapter = _model_path(cfg.engine.adapter)
    # Every other model a run loads, each in its own actor (vsd.preflight.run_models).
    cfg.stages.refine.model = _model_path(cfg.stages.refine.model)
    cfg.stages.propose.model = _model_path(cfg.stages.propose.model)
    cfg.stages.propose.depth_model = _model_path(cfg.stages.propose.depth_model)


def _key(uri: str) -> str:
    """The location a URI names, symlinks resolved for local paths, with a trailing slash."""
    if storage.is_s3(uri):
        return uri.rstrip("/") + "/"
    return os.path.realpath(absolute(uri)).rstrip("/") + "/"


def _is_folder(uri: str) -> bool:
    if storage.is_s3(uri):
        return not uri.rstrip("/").lower().endswith(FILE_SUFFIXES)
    return os.path.isdir(uri)


def check_apart(input_uri: str, output: str) -> None:
    """Refuse an output inside a folder input, an input inside the output, or the same place."""
    if not input_uri or not output or not _is_folder(input_uri):
        return
    inp, out = _key(input_uri), _key(output)
    if out == inp:
        raise ConfigError(f"output: {output} is the input folder itself; give the output its own folder")
    if out.startswith(inp):
        raise ConfigError(
            f"output: {output} is inside the input {input_uri}; the next run would annotate its own "
            "files (give the output a folder outside the input)"
        )
    if inp.startswith(out):
        raise ConfigError(
            f"input.uri: {input_uri} is inside the output {output}; give the input and the output "
            "separate folders"
        )
