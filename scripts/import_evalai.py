"""Import EvalAI's scores of a VQA v2 test-dev / test-std submission into server_scores/ (soho/eval/evalai.py).

Usage: python scripts/import_evalai.py RESULT.json [--variant pretrained] [--split test-dev2015]
Then `dvc repro` re-runs report and validate, which read server_scores/ beside results/.
"""

import sys

from soho.eval.evalai import main

if __name__ == "__main__":
    sys.exit(main())
