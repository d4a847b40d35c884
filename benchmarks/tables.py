"""Print the recorded results (benchmarks/results/*.json) as the markdown tables used in benchmarks/README.md.

Usage::

    python benchmarks/tables.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common as C  # noqa: E402


def machine_line(m: dict) -> str:
    return (f"{m['date'][:16].replace('T', ' ')} UTC, {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB, "
            f"{'/'.join(m['cpu_flags'])}), TF {m['tensorflow']}, Keras {m['keras']}, NumPy {m['numpy']}, commit "
            f"{m['git_commit']}; load average before {m['load_average_before'][0]}, after "
            f"{m['load_average_after'][0]}")


def main(names):
    files = sorted(C.RESULTS_DIR.glob("*.json"))
    for path in files:
        name = path.stem
        if names and name not in names:
            continue
        data = json.loads(path.read_text())
        print(f"### {name}\n\n_{machine_line(data['machine'])}; {data.get('rounds')} rounds_\n")
        for key in ("table", "inference_table", "training_table", "stage_table", "per_run", "per_config",
                    "reference_table"):
            if data.get(key):
                if key not in ("table", "per_run"):
                    print(f"\n{key.replace('_', ' ')}:\n")
                print(C.table(data[key], list(data[key][0])))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
