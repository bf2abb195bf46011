"""The fleet-owning DAO: members, shares, revenue split and governance."""
