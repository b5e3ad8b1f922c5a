"""What every benchmark shares: writing its JSON result under ``results/bench/`` (``--out``)."""

from __future__ import annotations

import json
import pathlib

from dcnn_dd.train.checkpoint import write_text_atomic


def write_json(out, name: str, payload) -> pathlib.Path:
    """``payload`` as indented JSON in ``out/name`` (directories created); prints and returns the path."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path
