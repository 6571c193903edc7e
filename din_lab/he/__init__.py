"""din_lab.he (see DESIGN.md section 3)."""
