"""What every DVC stage entry point shares: argument parsing, logging, readable failures.

Why: a stage that fails on bad input must print one clear line naming the file,
field or value, and exit non-zero, instead of a traceback through library code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from soho.config import PROFILES, ConfigError, Params, load_params
from soho.data.download import DownloadError
from soho.data.formats import FormatError
from soho.data.shards import ShardError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DownloadError, FormatError, ShardError)


def parser(stage: str, body: Callable, configure: Callable | None = None) -> argparse.ArgumentParser:
    """The arguments every stage takes, plus the stage's own (``configure``)."""
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=body.__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument(
        "--profile", choices=PROFILES, help="override the profile in the file (must agree with SOHO_PROFILE if set)"
    )
    if configure is not None:
        configure(parser)
    return parser


def run(stage: str, body: Callable[[Params, argparse.Namespace], None], configure: Callable | None = None) -> int:
    """Parse ``--params``/``--profile``, set up logging, run ``body``, map user errors to exit code 2."""
    args = parser(stage, body, configure).parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    try:
        params = load_params(args.params, args.profile)
        body(params, args)
    except USER_ERRORS as err:
        print(f"error: {stage}: {err}", file=sys.stderr)
        return 2
    return 0
