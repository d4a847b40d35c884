"""``tl-radiology search``: split (unless done) and search a recipe's space, alone or distributed."""

from __future__ import annotations

from tl_radiology._errors import InputError

from ._run import add_recipe_arguments, parse_overrides

HELP = "split and search a recipe's hyperparameters only (no final training); chief/worker distributed mode"

DESCRIPTION = """\
Make the split of MANIFEST in DIR (unless done) and search RECIPE's space on train/validation, without training
the final model. `tl-radiology run RECIPE --out DIR` afterwards reuses the finished search and only trains the
final model (give it the same recipe and --set / --max-trials options, or DIR/recipe.json, which holds them; a
larger --max-trials there would continue the search). The search is resumable: run the command again to continue
it; --max-trials N raises the total.

Distributed (keras-tuner's own mode): one chief serves the oracle and records every trial; any number of workers,
on this or other machines, ask it for trials and train them. Start the chief first, then the workers, all with the
same RECIPE, --set options and --out DIR (a shared folder across machines):

  tl-radiology search chest_xray --manifest m.csv --out /shared/runs/a --distributed chief --oracle 10.0.0.5:8000
  tl-radiology search chest_xray --manifest m.csv --out /shared/runs/a --distributed worker --oracle 10.0.0.5:8000 \\
      --tuner-id worker0

The chief makes the split and writes recipe.json; the workers wait for them, check their recipe against it and
run trials. The chief writes DIR/search_summary.json, counting each trial once, when the last worker is done.
Give each worker a stable --tuner-id: restarted with the same id after a crash it is handed back its trial.
"""

EPILOG = """\
examples:
  tl-radiology search liver_lesion_triphasic_ct --manifest phantoms/manifest.csv --out runs/liver --max-trials 20
  tl-radiology search chest_xray --manifest m.csv --out runs/a --strategy mirrored     # each trial on all GPUs
  tl-radiology run runs/liver/recipe.json --out runs/liver      # final training only (the same recipe, 20 trials)
"""


def add_arguments(p, common) -> None:
    """The ``search`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    add_recipe_arguments(p)
    p.add_argument("--distributed", default=None, metavar="ROLE", help="chief or worker (keras-tuner's distributed mode)")
    p.add_argument("--oracle", default=None, metavar="HOST:PORT",
                   help="where the chief serves the oracle and the workers connect, e.g. 127.0.0.1:8000")
    p.add_argument("--tuner-id", default=None, metavar="ID",
                   help="a worker's id, unique in the search (default worker-<host>-<pid>)")


def run(args) -> int:
    """Run ``search`` with parsed arguments; returns the exit status."""
    from tl_radiology import search_recipe  # deferred: --help must not import the parts

    overrides = parse_overrides(args.overrides, args)
    distributed = None
    if args.distributed is not None or args.oracle is not None or args.tuner_id is not None:
        if args.distributed is None or args.oracle is None:
            raise InputError("--distributed ROLE and --oracle HOST:PORT go together (and --tuner-id for a worker): "
                             "e.g. --distributed worker --oracle 127.0.0.1:8000 --tuner-id worker0.")
        from tl_radiology.search import DistributedConfig  # deferred, as above

        distributed = DistributedConfig(args.distributed, args.oracle, tuner_id=args.tuner_id)
    result = search_recipe(args.recipe, args.manifest, args.out, overrides=overrides, cache=args.cache,
                           restart_search=args.restart_search, distributed=distributed, strategy=args.strategy)
    print(result.format())
    return 0
