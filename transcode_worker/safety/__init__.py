"""Trust and safety building blocks (issue 13): PDQ hash lists, the NSFW classifier, the clamd
client and PDF previews.

Standalone for now: each module is tested on its own and none is wired into the pipeline yet.
"""
