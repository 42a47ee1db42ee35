"""Audio utilities: wire formats (PCM16, G.711), resampling and framing."""
