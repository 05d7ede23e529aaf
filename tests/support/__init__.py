"""Test tooling that is not part of the library: a loopback HTTP fixture server and the MLflow UI driver."""
