"""agents/deep (see DESIGN.md)."""
