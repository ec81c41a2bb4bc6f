"""edgecnn.board stage."""
