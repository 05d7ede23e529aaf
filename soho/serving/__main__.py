"""``python -m soho.serving fetch MODEL_URI DIR``: a checked local copy of a logged model, to serve.

Why: ``mlflow models serve -m runs:/...`` loads whatever the store's ``MLmodel`` names. Serving
the checked copy (``mlflow models serve -m DIR --env-manager local``) loads only SOHO's data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlflow.exceptions import MlflowException

from soho.serving import ModelArtifactError, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soho.serving", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download MODEL_URI into DIR and check it; prints the model folder")
    get.add_argument("model_uri")
    get.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        print(fetch(args.model_uri, args.dir))
    except (ModelArtifactError, MlflowException, OSError) as error:
        print(f"error: soho.serving: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
