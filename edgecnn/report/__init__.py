"""edgecnn.report stage."""
