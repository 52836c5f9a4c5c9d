"""The Transcode Worker: the commit step (verify what arrived) and, later, derivatives.

It consumes S3 `ObjectCreated` events from the uploads queue, streams each new original once,
checks it against its upload slot, and moves the media on; every state change is announced on
the media-events queue.
"""
