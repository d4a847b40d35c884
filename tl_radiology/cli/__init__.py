"""The ``tl-radiology`` command line: parses arguments and calls the package's public functions.

Each subcommand lives in its own module ``tl_radiology/cli/_<name>.py``: its ``HELP`` line, ``DESCRIPTION`` and
optional ``EPILOG`` (examples) text, ``add_arguments(parser, common)`` and ``run(args) -> int``, from which
:func:`build_parser` makes its parser. Command modules import heavy libraries (TensorFlow, Keras) inside ``run``
only, so ``tl-radiology --help`` stays fast.

Exit statuses: 0 success; 1 a failure that is not the input's fault; 2 bad input (one line ``error: ...`` naming
the file, row or option); 3 a refused opening of the sealed test set; 130 interrupted. ``--debug`` shows the
traceback and TensorFlow's own logging.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import os
import re
import sys
import traceback

from .._errors import TLRadiologyError
from .._lazy import lazy_exports, lazy_names
from .._progress import filter_native_stderr, quiet_tensorflow, set_quiet
from .._version import __version__

# The run's terminal summary imports the run and evaluation parts; it loads on first use so --help stays light.
_LAZY = {"_summary": ("format_run_result", "starting_weights_text")}

__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)

__all__ = ["main", "build_parser", *lazy_exports(_LAZY)]

# Order is the order of `tl-radiology --help`. A module missing here is simply not offered.
_COMMAND_MODULES = (
    "demo",
    "recipes",
    "backbones",
    "split",
    "run",
    "search",
    "evaluate",
    "predict",
    "explain",
    "report",
    "import_medmnist",
    "weights",
)


class _UsageError(Exception):
    """A command-line usage error, printed as the one line ``error: ...`` (exit status 2)."""


class _ArgumentParser(argparse.ArgumentParser):
    # argparse would print its usage and then a second line; the contract is one line `error: ...`, exit 2.
    # Subcommand parsers inherit this class (add_subparsers uses the parent's class).
    def error(self, message):
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            close = difflib.get_close_matches(wrong.group(1), re.findall(r"'([^']*)'", wrong.group(2)), n=1)
            message += f"; did you mean {close[0]!r}?" if close else ""
        end = "" if message.endswith("?") else "."
        raise _UsageError(f"{self.prog}: {message}{end} See `{self.prog} --help`.")


def _unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    options = [s for action in parser._actions for s in action.option_strings]
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
            hints += [f"did you mean {close[0]}?"] if close else []
    hint = f"; {' '.join(hints)}" if hints else ""
    return f"{parser.prog}: unrecognized arguments: {' '.join(extras)}{hint} See `{parser.prog} --help`."


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = _ArgumentParser(
        prog="tl-radiology",
        description=(
            "Transfer learning on radiology images: DICOM/PNG/arrays in, ImageNet backbones adapted, "
            "hyperparameters searched on validation, one honest evaluation on a sealed test set."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tl-radiology {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's own logging")
    common.add_argument("--quiet", action="store_true", help="no progress lines, only results and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tl_radiology.cli._{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tl_radiology.cli._{name}":
                continue
            raise
        command = sub.add_parser(
            name.replace("_", "-"), parents=[common], help=module.HELP, description=module.DESCRIPTION,
            epilog=getattr(module, "EPILOG", None), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command, common)
        if hasattr(module, "run"):  # a command with actions (weights) sets each action's own
            command.set_defaults(func=module.run)
    parser.set_defaults(_commands=sub.choices)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _global_flags_after_command(argv: list[str]) -> list[str]:
    # `tl-radiology --debug run ...` and `tl-radiology run --debug ...` both work: the flags belong to each
    # subcommand's parser, so ones given before the command are moved after it.
    flags = [a for a in argv[: _command_index(argv)] if a in ("--debug", "--quiet")]
    if not flags:
        return argv
    i = _command_index(argv)
    rest = [a for a in argv[:i] if a not in flags]
    return rest + argv[i : i + 1] + flags + argv[i + 1 :]


def _command_index(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return i
    return len(argv)


def _is_console_script() -> bool:
    # Only a real command-line process filters its native stderr; main() called from tests or a notebook does not.
    return os.path.basename(sys.argv[0] or "") in ("tl-radiology", "__main__.py")


def main(argv=None) -> int:
    """Entry point of the ``tl-radiology`` console script; returns the exit status."""
    argv = _global_flags_after_command(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv
    quiet_tensorflow(debug=debug)
    if not debug:
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        if __name__ == "__main__" or _is_console_script():
            filter_native_stderr()
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            raise _UsageError(_unrecognized(args._commands.get(getattr(args, "command", None), parser), extras))
    except _UsageError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    set_quiet(getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except TLRadiologyError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`tl-radiology backbones | head -3`): nothing failed here, and what
        # the command wrote to files is complete. Say nothing, and let the shell see the usual SIGPIPE status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's last flush does not fail again
        return 128 + 13
    except PermissionError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: permission denied: {exc.filename or exc} cannot be read or written by this user. Check the "
              "file's permissions, or choose a path you can read (inputs) or write (--out).", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug:
            traceback.print_exc()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            print(f"error: no space left while writing {exc.filename or 'the output folder'} "
                  f"({os.strerror(exc.errno)}). Free space there or choose another --out, then run the command again "
                  "(finished steps are kept; nothing half-written is used).", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, traceback only with --debug
        if debug:
            traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
