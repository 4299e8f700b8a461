"""neural3d (see DESIGN.md)."""
