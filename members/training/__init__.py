"""The training side: one member's trainer and its seams, k-fold and snapshot members, several members at once."""
