"""din_lab.protocol (see DESIGN.md section 3)."""
