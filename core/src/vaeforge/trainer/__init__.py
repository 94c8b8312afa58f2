"""The training loop and the pieces it is made of (devices, data, EMA, loss composition)."""
