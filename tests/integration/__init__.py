"""End to end: stages (through DVC or as DVC runs them), the repo's scripts, MLflow and its UI, HTTP downloads."""
