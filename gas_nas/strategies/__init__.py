"""Search strategies: what proposes a search's trials, behind one registry (`registry.STRATEGIES`)."""
