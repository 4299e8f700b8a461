"""bodies (see DESIGN.md)."""
