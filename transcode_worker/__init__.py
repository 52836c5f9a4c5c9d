"""The Transcode Worker: the commit step (verify what arrived), then the derivatives.

It consumes S3 `ObjectCreated` events from the uploads queue, streams each new original once,
checks it against its upload slot (`commit.py`), makes its derivatives (`pipeline.py` runs the
functions of `derivatives/`: `images.py` thumbnails, `audio.py` voice notes, `video.py` HLS, in
a process pool, as `variant_plans.py` says) and moves the media on; every state change is
announced on the media-events queue.
"""
