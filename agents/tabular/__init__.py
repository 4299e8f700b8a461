"""agents/tabular (see DESIGN.md)."""
