"""edgecnn.evaluate stage."""
