"""envs (see DESIGN.md)."""
