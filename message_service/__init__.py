"""The Message Service: conversations, messages, idempotent sends and per-device delivery.

It is the one authority on membership; it asks the Media Service about media and pushes
frames to whichever gateway instance holds each online device.
"""
