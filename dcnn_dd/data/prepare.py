"""Prepare a TFDS dataset once, in the random-access ``array_record`` format that
:class:`dcnn_dd.data.sources.TFDSSource` reads:

    pip install 'dcnn-dd[prepare]'
    python -m dcnn_dd.data.prepare cifar10 [--data-dir DIR]

Downloading and writing the dataset needs TensorFlow (TFDS encodes the images with it);
reading it afterwards does not.  ``--data-dir`` defaults to TFDS's own (``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``); pass the same directory as ``data_dir=`` when loading.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from dcnn_dd.data.sources import TFDS_NAMES

PREPARE_EXTRA = ("pip install 'dcnn-dd[prepare]'   # or: pip install tensorflow-cpu tensorflow-datasets "
                 "importlib_resources")
# TFDS's download path imports importlib_resources (through etils.epath) but does not require it


def missing_requirements() -> list[str]:
    """The modules preparing needs that are not installed."""
    needed = ("tensorflow", "tensorflow_datasets", "importlib_resources")
    return [m for m in needed if importlib.util.find_spec(m) is None]


def prepare(name: str, data_dir=None) -> str:
    """Download ``name`` and write it as ``array_record``; returns the dataset directory."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(file_format="array_record")
    return str(builder.data_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dcnn_dd.data.prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help=f"TFDS dataset name ({', '.join(TFDS_NAMES)}, ...)")
    ap.add_argument("--data-dir", default=None,
                    help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = ap.parse_args(argv)
    missing = missing_requirements()
    if missing:
        what = f"{missing[0]}, which is" if len(missing) == 1 else f"{', '.join(missing)}, which are"
        print(f"Preparing a TFDS dataset needs {what} not installed here. Install the requirements with:\n"
              f"    {PREPARE_EXTRA}\nthen run this command again.", file=sys.stderr)
        return 2
    where = prepare(args.name, args.data_dir)
    print(f"prepared {args.name} in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
