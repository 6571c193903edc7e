"""din_lab.learning (see DESIGN.md section 3)."""
