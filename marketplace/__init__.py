"""The task marketplace: signed tasks, bids, awards, escrow and proof of delivery."""
