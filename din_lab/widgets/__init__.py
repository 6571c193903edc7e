"""din_lab.widgets (see DESIGN.md section 3)."""
