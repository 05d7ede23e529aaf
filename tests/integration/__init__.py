"""End to end on tiny data: stages through DVC, MLflow runs and its UI, downloads from the loopback HTTP server."""
