"""din_lab.secagg (see DESIGN.md section 3)."""
