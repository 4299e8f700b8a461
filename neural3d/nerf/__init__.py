"""NeRF: fields (vanilla positional-encoding MLP and Instant-NGP hash grid), presets, trainer."""
