"""Neural-network ops: pooling, normalization, softmax."""
