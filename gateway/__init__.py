"""The Edge Gateway: holds clients' WebSocket connections and relays JSON frames.

It keeps the connection registry (which gateway holds which device) current, forwards sends to
the Message Service over HTTP and delivers the frames the Message Service pushes. Media bytes
never pass through it.
"""
