"""Run-time: batching of inputs, artifacts (save / load), and (per scheme) client and server."""
