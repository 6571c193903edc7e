"""din_lab.roles (see DESIGN.md section 3)."""
