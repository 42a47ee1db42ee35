"""Model engines: one small class per model family behind the interfaces in `base`."""
