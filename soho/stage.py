"""What every DVC stage entry point shares: argument parsing, logging, readable failures.

Why: a stage that fails on bad input must print one clear line naming the file,
field or value, and exit non-zero, instead of a traceback through library code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from soho.config import ConfigError, Params, load_params
from soho.data.download import DownloadError
from soho.data.formats import FormatError
from soho.data.shards import ShardError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DownloadError, FormatError, ShardError)


def run(stage: str, body: Callable[[Params, argparse.Namespace], None], configure: Callable | None = None) -> int:
    """Parse ``--params``/``--profile``, set up logging, run ``body``, map user errors to exit code 2."""
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=body.__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--profile", choices=["embedded", "paper"], help="override the profile in the file")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {stage} %(levelname)s %(message)s")
    try:
        params = load_params(args.params, args.profile)
        body(params, args)
    except USER_ERRORS as err:
        print(f"error: {stage}: {err}", file=sys.stderr)
        return 2
    return 0
