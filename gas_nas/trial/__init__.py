"""A trial: training, measuring and judging one discriminator (one cohort of them). Imports nothing of the study, the strategies or the terminal."""
