"""edgecnn.train stage."""
