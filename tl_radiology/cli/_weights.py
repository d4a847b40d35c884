"""``tl-radiology weights status|import``: Keras' ImageNet weights files, offline."""

from __future__ import annotations

from tl_radiology._errors import InputError
from tl_radiology._progress import status

from ._backbones import format_table

HELP = "check and import ImageNet weights files for offline use"

DESCRIPTION = """\
Nothing is downloaded. EfficientNet-Lite0/1/2's ImageNet weights come with the toolkit (pip packages, converted
into Keras' cache folder on first use); for the other backbones weights='imagenet' uses Keras' ImageNet file only
if it is already in Keras' cache folder. `status` shows which files are there and where they come from; `import`
checks a file against a backbone and copies it there (a PyTorch .pth state dict is converted, for
EfficientNet-Lite).
"""


def add_arguments(parser, common) -> None:
    """The ``weights`` command's two actions, ``status`` and ``import``, each with its arguments."""
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    status_parser = actions.add_parser(
        "status", parents=[common], help="one line per backbone: file, present, size, hash check",
        description="Show Keras' weights folder and, per backbone, its ImageNet file, whether it is present, "
                    "its size and whether it matches the hash Keras publishes.",
    )
    status_parser.add_argument("pattern", nargs="?", default="*", help="wildcard over backbone names (default: all)")
    status_parser.set_defaults(func=run_status)
    importer = actions.add_parser(
        "import", parents=[common], help="check a weights file against a backbone and copy it where Keras looks",
        description="Check FILE against the backbone (it must load with every layer's shapes matching; its hash "
                    "is compared with Keras' published one and reported) and copy it atomically into Keras' "
                    "weights folder under the backbone's ImageNet file name.",
    )
    importer.add_argument("file", metavar="FILE", help="the weights file (.h5 as Keras publishes, .weights.h5, or "
                                                       "an EfficientNet-Lite .pth state dict)")
    importer.add_argument("--backbone", required=True, help="the registered backbone the file belongs to")
    importer.add_argument("--overwrite", action="store_true", help="replace a different file already in place")
    importer.set_defaults(func=run_import)


def _size(size) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def _hash_text(hash_ok, present) -> str:
    if not present:
        return "-"
    return {True: "matches Keras", False: "differs", None: "not published"}[hash_ok]


def run_status(args) -> int:
    # deferred: --help must not import the parts
    from tl_radiology.backbones import keras_cache_dir, list_backbones, weights_status

    if not list_backbones(args.pattern):
        raise InputError(f"No backbone matches {args.pattern!r}. Run `tl-radiology weights status` to list all.")
    rows = weights_status(args.pattern)
    print(f"Keras weights folder: {keras_cache_dir()}")
    print(format_table(
        ["backbone", "file", "source", "present", "size", "check"],
        [[r["backbone"], r["file"], _source_text(r), _present_text(r), _size(r["size"]),
          _check_text(r)] for r in rows],
    ))
    missing = sum(not r["available"] for r in rows)
    if missing:
        print(f"{missing} of {len(rows)} missing: import a file with "
              "`tl-radiology weights import FILE --backbone NAME`.")
    return 0


def _source_text(row) -> str:
    if row["source"].startswith("pip "):
        return f"{row['source']} {row['package']}" if row["package"] else f"{row['source']} (not installed)"
    return row["source"]


def _present_text(row) -> str:
    if row["present"]:
        return "yes"
    return "converts on first use" if row["available"] else "no"


def _check_text(row) -> str:
    if not row["present"]:
        return "-"
    if row["source"].startswith("pip "):
        return {True: "converted from the package", False: "NOT the package's file", None: "no record"}[
            row["hash_ok"]]
    return _hash_text(row["hash_ok"], True)


def run_import(args) -> int:
    from tl_radiology.backbones import import_weights  # deferred: --help must not import the parts

    status(f"checking {args.file} against {args.backbone} ...")
    result = import_weights(args.file, args.backbone, overwrite=args.overwrite)
    verb = "already in place" if result["unchanged"] else ("replaced" if result["replaced"] else "imported")
    how = " (rewritten in Keras' published layout)" if result["converted"] else ""
    print(f"{verb}: {result['path']}{how}")
    if result["converted"] and str(args.file).lower().endswith((".pth", ".pt")):
        print(f"sha256 {result['sha256']}; weights label: {result['label']}")
        return 0
    print(f"sha256 {result['sha256']}; Keras' published hash: "
          f"{_hash_text(result['published_hash_ok'], True)}")
    if result["published_hash_ok"] is False:
        status(
            f"warning: this file is not byte-identical to Keras' published {result['backbone']} ImageNet file; its "
            "layers fit, and models built from it record published_hash_ok=false in their weights identity."
        )
    return 0
