"""Spatial intelligence: the shared map fused from verified observations, and the road graph."""
