"""Demo data and load: the seed, simulated HTTP users, dashboard simulations."""
