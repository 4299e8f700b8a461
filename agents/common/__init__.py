"""agents/common (see DESIGN.md)."""
