"""din_lab.storage (see DESIGN.md section 3)."""
