"""soho: reproducible SOHO (+SCL) vision-language pre-training, from download to results table."""

__version__ = "0.1.0"
