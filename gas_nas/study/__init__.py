"""The study: Optuna studies opened and resumed, their samplers, records, workers and readers. Imports nothing of the CLI, the library layer or the strategies."""
