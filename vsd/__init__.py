"""llava-vsd: visual spatial descriptions with LLaVA, trained on Ray Train and run on Ray Data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def read(root: str, **kwargs: Any) -> pa.Table:
    """The current rows of an annotation output (local path or ``s3://``): see
    `vsd.annotate.output.reader.read`. Imported lazily so ``import vsd`` stays light."""
    from vsd.annotate.output.reader import read as _read

    return _read(root, **kwargs)
