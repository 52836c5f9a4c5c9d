"""Voice notes: `voice_low` (Opus in Ogg, mono, 48 kHz, ~24 kbit/s) plus duration and waveform.

One streaming pass: demux → decode → resample to mono float at 48 kHz → (waveform, Opus
encoder) → Ogg. Nothing is kept per frame, so memory does not grow with the duration; the
declared duration is capped before decoding and the decoded one while decoding.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from transcode_worker.derivatives.av_probe import (
    AudioConverter,
    AvLimits,
    best_audio,
    check_codec,
    check_declared_duration,
    decode,
    open_input,
    original_mime,
)
from transcode_worker.derivatives.types import Derived, DerivedFile, DerivedVariant, DeriveError

VOICE_KEY = "voice_low.ogg"
VOICE_CONTENT_TYPE = "audio/ogg"
VOICE_RATE = 48_000
WAVEFORM_BUCKETS = 64
# Decoded audio may run this much past the declared cap (rounding, encoder padding).
DURATION_SLACK_SECONDS = 1.0
# Below this RMS (about -80 dBFS) a recording counts as silent: its waveform is all zeros.
SILENCE_RMS = 1e-4


class Waveform:
    """The loudness envelope of a stream of samples, in bounded memory.

    Samples are summed into blocks (sum of squares and count); when there are too many
    blocks, neighbours merge pairwise, so at most `max_blocks` numbers are kept however long
    the recording. `buckets()` then gives the RMS of each 1/`buckets` of the duration.
    """

    def __init__(self, *, block: int = 480, max_blocks: int = 4096) -> None:
        self._block = block
        self._max_blocks = max_blocks
        self._energy = np.zeros(0, dtype=np.float64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._carry = np.zeros(0, dtype=np.float64)
        self._samples = 0

    @property
    def samples(self) -> int:
        return self._samples

    def add(self, samples: npt.NDArray[np.floating]) -> None:
        self._samples += len(samples)
        data = np.concatenate((self._carry, samples.astype(np.float64, copy=False)))
        whole = len(data) // self._block * self._block
        if whole:
            energy = np.square(data[:whole]).reshape(-1, self._block).sum(axis=1)
            self._energy = np.concatenate((self._energy, energy))
            self._counts = np.concatenate(
                (self._counts, np.full(len(energy), self._block, dtype=np.int64))
            )
        self._carry = data[whole:]
        while len(self._energy) > self._max_blocks:
            self._merge_pairs()

    def _merge_pairs(self) -> None:
        even = len(self._energy) // 2 * 2
        self._energy = np.concatenate(
            (self._energy[0:even:2] + self._energy[1:even:2], self._energy[even:])
        )
        self._counts = np.concatenate(
            (self._counts[0:even:2] + self._counts[1:even:2], self._counts[even:])
        )
        self._block *= 2

    def buckets(self, count: int = WAVEFORM_BUCKETS) -> list[int]:
        """`count` integers 0-255, the loudest bucket 255 (all zeros for silence)."""
        energy = np.concatenate((self._energy, [float(np.square(self._carry).sum())]))
        counts = np.concatenate((self._counts, [len(self._carry)]))
        total = int(counts.sum())
        if total == 0:
            return [0] * count
        ends = np.cumsum(counts)
        centres = ends - counts / 2
        owner = np.minimum((centres * count / total).astype(np.int64), count - 1)
        bucket_energy = np.bincount(owner, weights=energy, minlength=count)
        bucket_counts = np.bincount(owner, weights=counts, minlength=count)
        # A recording shorter than `count` blocks leaves buckets without a block centre:
        # they take the block under their own centre.
        empty = np.flatnonzero(bucket_counts == 0)
        if len(empty):
            under = np.searchsorted(ends, (empty + 0.5) * total / count, side="right")
            under = np.minimum(under, len(ends) - 1)
            bucket_energy[empty] = energy[under]
            bucket_counts[empty] = counts[under]
        rms = np.sqrt(bucket_energy / np.maximum(bucket_counts, 1))
        peak = float(rms.max())
        if peak < SILENCE_RMS:
            return [0] * count
        return [int(value) for value in np.clip(np.rint(rms / peak * 255), 0, 255)]


def derive_voice(source: Path, out_dir: Path, *, limits: AvLimits) -> Derived:
    """`voice_low` and the voice meta (`duration_ms`, `waveform`, `mime`) of an original."""
    with open_input(source, limits) as container:
        stream = best_audio(container)
        if stream is None:
            raise DeriveError("no_streams", "the file has no audio stream")
        codec = check_codec(stream, limits.allowed_audio_codecs)
        cap = limits.max_voice_duration_seconds
        check_declared_duration(container, stream, cap)
        mime = original_mime(container, "voice")

        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / VOICE_KEY
        waveform = Waveform()
        max_samples = int((cap + DURATION_SLACK_SECONDS) * VOICE_RATE)
        converter = AudioConverter(sample_format="flt", layout="mono", rate=VOICE_RATE)
        try:
            with av.open(str(target), mode="w", format="ogg") as output:
                encoder = output.add_stream(
                    "libopus", rate=VOICE_RATE, layout="mono", options={"application": "voip"}
                )
                encoder.bit_rate = limits.voice_bitrate

                def write(frames: list[av.AudioFrame]) -> None:
                    for frame in frames:
                        # Our own clock: the output is gapless whatever the source's stamps.
                        frame.pts = waveform.samples
                        frame.time_base = Fraction(1, VOICE_RATE)
                        waveform.add(frame.to_ndarray()[0])
                        output.mux(encoder.encode(frame))

                for decoded in decode(container, stream, max_packets=limits.max_packets):
                    if isinstance(decoded, av.AudioFrame):
                        write(converter.convert(decoded))
                    if waveform.samples > max_samples:
                        raise DeriveError("too_long", f"longer than {cap:.0f} s once decoded")
                write(converter.flush())
                output.mux(encoder.encode(None))
            if waveform.samples == 0:
                raise DeriveError("corrupt_media", "no audio could be decoded")
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    size = target.stat().st_size
    return Derived(
        meta={
            "duration_ms": round(waveform.samples * 1000 / VOICE_RATE),
            "waveform": waveform.buckets(),
            "mime": mime,
            "audio_codec": codec,
        },
        files=[DerivedFile(key=VOICE_KEY, path=target, content_type=VOICE_CONTENT_TYPE)],
        variants=[
            DerivedVariant(
                name="voice_low", key=VOICE_KEY, content_type=VOICE_CONTENT_TYPE, size=size
            )
        ],
    )
