"""Models and specs: what a discriminator is and how it trains, built from a spec."""
