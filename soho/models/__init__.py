"""SOHO model components: vision encoder, visual dictionary, cross-modal fusion, heads."""
