"""din_lab.experiment (see DESIGN.md section 3)."""
