"""edgecnn.store stage."""
