"""edgecnn.bench stage."""
