"""``tl-radiology backbones [PATTERN]``: the backbone registry as a table."""

from __future__ import annotations

import json

from tl_radiology._errors import InputError

HELP = "list the registered backbones (sizes, features, preprocessing, layer groups, weights)"

DESCRIPTION = """\
List the registered backbones: default and minimum input size, pooled feature dimension, the preprocessing their
weights expect, their layer groups for unfreezing, and whether Keras' ImageNet weights file is available offline
(see `tl-radiology weights status`).
"""


def add_arguments(p, common) -> None:
    """The ``backbones`` command's arguments (its parser is made from HELP and DESCRIPTION)."""
    p.add_argument("pattern", nargs="?", default="*",
                   help="shell-style wildcard over names, e.g. 'dense*' or 'resnet*v2' (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")


def format_table(headers, rows) -> str:
    """Plain-text table with left-aligned columns (shared by the backbones and weights commands)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _groups(names) -> str:
    return f"{names[0]}..{names[-1]} ({len(names)})" if len(names) > 1 else f"{names[0]} (1)"


def run(args) -> int:
    # deferred: --help must not import the parts
    from tl_radiology.backbones import get_backbone, list_backbones, weights_status

    if not any(ch in args.pattern for ch in "*?["):
        get_backbone(args.pattern)  # a plain name: an unknown one fails with "did you mean"
    names = list_backbones(args.pattern)
    if not names:
        raise InputError(
            f"No backbone matches {args.pattern!r}. Expected a wildcard such as 'dense*'; run "
            "`tl-radiology backbones` to list them all."
        )
    rows_by_name = {row["backbone"]: row for row in weights_status(args.pattern, check_hash=False)}
    present = {name: row["available"] for name, row in rows_by_name.items()}
    packaged = {name for name, row in rows_by_name.items() if row["package"]}
    records = []
    for name in names:
        spec = get_backbone(name)
        preprocess = spec.preprocess if spec.preprocess != "none" else f"none (inside: {spec.builtin_preprocess})"
        records.append({
            "name": name,
            "default_size": spec.default_size,
            "min_size": spec.min_size,
            "feature_dim": spec.feature_dim,
            "preprocess": preprocess,
            "layer_groups": list(spec.group_names),
            "imagenet_weights_local": present.get(name, False),
        })
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    headers = ["backbone", "default", "min", "features", "preprocess", "layer groups", "imagenet weights"]
    rows = [
        [r["name"], f"{r['default_size']}x{r['default_size']}", f"{r['min_size']}x{r['min_size']}",
         r["feature_dim"], r["preprocess"], _groups(r["layer_groups"]),
         ("installed" if r["name"] in packaged else "local") if r["imagenet_weights_local"] else "missing"]
        for r in records
    ]
    print(format_table(headers, rows))
    return 0
