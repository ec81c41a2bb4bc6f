"""edgecnn.deploy stage."""
