"""edgecnn.data stage."""
