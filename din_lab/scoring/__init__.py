"""din_lab.scoring (see DESIGN.md section 3)."""
