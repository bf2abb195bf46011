"""The web dashboard DAO members use to watch the fleet and vote."""
