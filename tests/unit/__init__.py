"""Fast tests of one module each (seconds, no stage, server or second process)."""
