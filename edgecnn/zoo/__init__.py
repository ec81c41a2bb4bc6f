"""edgecnn.zoo stage."""
