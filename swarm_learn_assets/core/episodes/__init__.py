"""Learn models and the episodes they cut (DESIGN §5): what counts as an episode, how its outcome
is judged, the same rules vectorised over many sessions, and the one definition of counting
worker-task outcomes."""
