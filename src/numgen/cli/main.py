"""The ``numgen`` command's parser and error handling: thin Typer commands over the Python API,
with Rich output.

Each command module of ``numgen.cli`` adds its commands to the shared app when imported. Bad
arguments and bad input (a :class:`numgen.errors.NumgenError`, or an OS error such as a missing
file or a full disk) end with one line on stderr and exit code 2; any other exception is a bug and
keeps its traceback (see :func:`main`). ``--verbose``/``-v`` shows numgen's log messages.
"""

from __future__ import annotations

import logging
import re

import typer

from numgen.cli import compose, data, evaluate, latent, model, serve  # noqa: F401  (importing registers the commands)
from numgen.cli.common import app, err_console, user_error_message


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; bad arguments and bad input end with one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = typer.main.get_command(app)
    try:
        # without standalone mode, Click returns an Exit's code rather than raising it
        code = command.main(args=argv, prog_name="numgen", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("Interrupted.")
        return 130
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as err:  # Click's usage errors: bad option, missing argument ...
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx else ""
        if ctx and re.fullmatch(r"-[0-9.,]", getattr(err, "option_name", None) or ""):
            hint = f"; put -- before a number that starts with -: `{ctx.command_path} -- -1`"
        err_console.print(
            f"Error: {err.format_message()}{hint}", highlight=False, soft_wrap=True, markup=False
        )
        return getattr(err, "exit_code", 2)
    except Exception as err:
        message = user_error_message(err)
        if message is None:
            raise  # a bug: keep the traceback
        err_console.print(f"Error: {message}", highlight=False, soft_wrap=True, markup=False)
        return 2
    return code if isinstance(code, int) else 0
