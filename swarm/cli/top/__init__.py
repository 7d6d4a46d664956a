"""``hivemind top``: a live terminal dashboard of the swarm (Textual), reading only Redis."""
