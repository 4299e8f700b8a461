"""generative (see DESIGN.md)."""
