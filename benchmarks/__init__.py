"""Performance harness: each benchmark prints figures as ratios against a baseline from the same run."""
