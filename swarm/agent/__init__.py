"""The base every agent stands on: the actor base class (heartbeats, Redis) and typed facades."""
