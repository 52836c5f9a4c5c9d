"""Videos: a `poster` JPEG and an HLS ladder (`hls`: H.264 + AAC in MPEG-TS segments).

The source is decoded once. Each decoded frame goes through every rung's filter graph
(scale, turn upright, square pixels, yuv420p, side data dropped) into that rung's libx264
encoder. Each decoded audio frame is resampled and AAC-encoded once, by the first rung, and the
same packets are muxed into every rung (the rungs' audio is identical anyway); FFmpeg's
`hls` muxer cuts each rung into `hls/{rung}/seg_%05d.ts` and writes `hls/{rung}/index.m3u8`.
Keyframes are forced every `segment_seconds` of source time on every rung, so segments line
up across rungs. No frame is kept beyond the one being encoded (and one candidate poster), so
memory does not grow with the length of the video. We write the master playlist ourselves,
from what the rungs actually produced (peak and average segment bit rates, codec strings).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.audio.stream import AudioStream
from av.filter import Graph
from av.video.frame import PictureType
from av.video.stream import VideoStream
from PIL import Image

from transcode_worker.derivatives.av_probe import (
    AudioConverter,
    AvLimits,
    Transform,
    best_audio,
    best_video,
    check_codec,
    check_declared_duration,
    check_dimensions,
    check_frame_count,
    check_stored_dimensions,
    decode,
    display_size,
    display_transform,
    open_input,
    original_mime,
)
from transcode_worker.derivatives.moderation import (
    FrameSampler,
    Moderation,
    ModerationBlocked,
    ModerationPass,
)
from transcode_worker.derivatives.types import (
    Derived,
    DerivedFile,
    DerivedVariant,
    DeriveError,
    ProgressFile,
)

POSTER_KEY = "poster.jpg"
POSTER_CONTENT_TYPE = "image/jpeg"
POSTER_QUALITY = 85
HLS_DIR = "hls"
MASTER_KEY = f"{HLS_DIR}/master.m3u8"
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CONTENT_TYPE = "video/mp2t"
AUDIO_RATE = 48_000
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC, as FFmpeg's aac encoder writes it
DURATION_SLACK_SECONDS = 1.0
MAX_PENDING_AUDIO_FRAMES = 3000  # audio decoded before the first video frame (about a minute)
MIN_BITRATE = 100_000  # the floor of a below-the-ladder rung
FALLBACK_FRAME_RATE = Fraction(30)


@dataclass(frozen=True)
class Rung:
    """One HLS rendition, in display orientation."""

    name: str  # "360p": its short side
    width: int
    height: int
    bitrate: int


def _even_floor(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _even_round(value: float) -> int:
    return max(2, round(value / 2) * 2)


def plan_ladder(width: int, height: int, ladder: Iterable[tuple[int, int]]) -> list[Rung]:
    """The rungs for a source shown `width`x`height`, smallest first; never upscaled.

    A rung's size is its short side, so a portrait phone video gets the same rungs (and the
    same pixel counts) as a landscape one. A source smaller than every rung gets one rung at
    its own size, its bit rate scaled down from the lowest rung's by pixel count.
    """
    short, long = min(width, height), max(width, height)
    landscape = width >= height
    steps = sorted(ladder)
    rungs = []
    for side, bitrate in steps:
        if side > short:
            continue
        rung_short = _even_floor(side)
        rung_long = min(_even_round(side * long / short), _even_floor(long))
        rungs.append(_rung(rung_short, rung_long, landscape, bitrate))
    if not rungs and steps:
        side, bitrate = steps[0]
        rung_short, rung_long = _even_floor(short), _even_floor(long)
        nominal = side * side * 16 / 9
        scaled = round(bitrate * rung_short * rung_long / nominal)
        rungs.append(
            _rung(rung_short, rung_long, landscape, max(MIN_BITRATE, min(bitrate, scaled)))
        )
    return rungs


def _rung(short: int, long: int, landscape: bool, bitrate: int) -> Rung:
    width, height = (long, short) if landscape else (short, long)
    return Rung(name=f"{short}p", width=width, height=height, bitrate=bitrate)


@dataclass(frozen=True)
class Segment:
    uri: str
    seconds: float


def read_media_playlist(path: Path) -> list[Segment]:
    """The segments of a VOD media playlist, checked: every URI relative and present."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U" or "#EXT-X-ENDLIST" not in lines:
        raise RuntimeError(f"{path}: not a finished HLS playlist")
    segments = []
    pending: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            pending = float(line.removeprefix("#EXTINF:").split(",", 1)[0])
        elif not line.startswith("#"):
            if pending is None or pending <= 0:
                raise RuntimeError(f"{path}: {line} has no positive EXTINF")
            if "/" in line or ":" in line or not (path.parent / line).is_file():
                raise RuntimeError(f"{path}: {line} is not a relative URI of a written segment")
            segments.append(Segment(uri=line, seconds=pending))
            pending = None
    if not segments:
        raise RuntimeError(f"{path}: no segments")
    return segments


def _copy_packet(packet: av.Packet[AudioStream]) -> av.Packet[AudioStream]:
    copy: av.Packet[AudioStream] = av.Packet(bytes(packet))  # type: ignore[assignment]
    copy.pts, copy.dts, copy.duration = packet.pts, packet.dts, packet.duration
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


def _avc1_codecs(packet: bytes) -> str | None:
    """`avc1.PPCCLL` from the first SPS NAL unit of an Annex B packet (RFC 6381)."""
    start = 0
    while (found := packet.find(b"\x00\x00\x01", start)) != -1:
        nal = packet[found + 3 : found + 7]
        if len(nal) == 4 and nal[0] & 0x1F == 7:
            return f"avc1.{nal[1]:02x}{nal[2]:02x}{nal[3]:02x}"
        start = found + 3
    return None


class _RungEncoder:
    """One rung: a filter graph per input picture shape, libx264, AAC, the `hls` muxer."""

    def __init__(
        self,
        rung: Rung,
        directory: Path,
        *,
        transform: Transform,
        time_base: Fraction,
        frame_rate: Fraction,
        audio_layout: str | None,
        limits: AvLimits,
    ) -> None:
        self.rung = rung
        self.directory = directory
        self.codecs: str | None = None
        self._transform = transform
        self._time_base = time_base
        self._graph: Graph | None = None
        self._graph_input: tuple[int, int, str] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.output = av.open(
            str(directory / "index.m3u8"),
            mode="w",
            format="hls",
            options={
                "hls_time": str(limits.segment_seconds),
                "hls_playlist_type": "vod",
                "hls_list_size": "0",
                "hls_segment_type": "mpegts",
                "hls_segment_filename": str(directory / "seg_%05d.ts"),
                "hls_flags": "independent_segments",
            },
        )
        keyframe_interval = max(1, round(frame_rate * limits.segment_seconds))
        self.video = self.output.add_stream(
            "libx264",
            rate=frame_rate,
            options={
                "preset": "veryfast",
                "forced-idr": "1",  # the forced keyframes below start closed GOPs
                "maxrate": str(rung.bitrate * 3 // 2),
                "bufsize": str(rung.bitrate * 2),
            },
        )
        # Frame threads, as the ffmpeg CLI uses: PyAV's default thread type (SLICE) makes
        # FFmpeg's libx264 wrapper ask for x264's sliced threads, which halve the parallelism
        # (measured: same CPU, ~2x the wall time; ~40 MiB more peak per job; issue 14 item 4).
        self.video.codec_context.thread_type = "AUTO"
        self.video.width = rung.width
        self.video.height = rung.height
        self.video.pix_fmt = "yuv420p"
        self.video.bit_rate = rung.bitrate
        self.video.time_base = time_base
        # Keyframes are forced at every segment boundary; x264 adds its own only on scene cuts.
        self.video.gop_size = 2 * keyframe_interval
        self.audio: AudioStream | None = None
        if audio_layout is not None:
            self.audio = self.output.add_stream("aac", rate=AUDIO_RATE, layout=audio_layout)
            self.audio.bit_rate = limits.audio_bitrate

    def _filter(self, frame: av.VideoFrame) -> Graph:
        shape = (frame.width, frame.height, frame.format.name)
        if self._graph is not None and shape == self._graph_input:
            return self._graph
        graph = Graph()
        turned = any(step.startswith("transpose") for step in self._transform)
        # Scale first (cheaper), to the size that is the rung once turned upright.
        width, height = (
            (self.rung.height, self.rung.width) if turned else (self.rung.width, self.rung.height)
        )
        nodes = [
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=self._time_base,
            ),
            graph.add("scale", f"w={width}:h={height}"),
        ]
        for step in self._transform:
            name, _, arguments = step.partition("=")
            nodes.append(graph.add(name, arguments or None))
        nodes += [
            graph.add("setsar", "1"),
            graph.add("format", "pix_fmts=yuv420p"),
            # Nothing of the source's side data (display matrix, SEI) reaches the encoder.
            graph.add("sidedata", "mode=delete"),
            graph.add("buffersink"),
        ]
        graph.link_nodes(*nodes)
        graph.configure()
        self._graph, self._graph_input = graph, shape
        return graph

    def add_video(self, frame: av.VideoFrame, *, keyframe: bool) -> av.VideoFrame:
        """Encode one source frame; returns the upright, scaled picture (for the poster)."""
        try:
            graph = self._filter(frame)
            graph.push(frame)
            upright = graph.vpull()
        except (av.error.FFmpegError, ValueError) as error:
            raise DeriveError("corrupt_media", "a picture cannot be converted") from error
        upright.pts = frame.pts
        upright.time_base = self._time_base
        upright.pict_type = PictureType.I if keyframe else PictureType.NONE
        self._mux_video(self.video.encode(upright))
        return upright

    def _mux_video(self, packets: list[av.Packet[VideoStream]]) -> None:
        if self.codecs is None and packets:
            # The hls muxer asks for global headers: the SPS is in the extradata.
            extradata = self.video.codec_context.extradata or b""
            self.codecs = _avc1_codecs(extradata) or _avc1_codecs(bytes(packets[0]))
        self.output.mux(packets)

    def encode_audio(self, frame: av.AudioFrame | None) -> list[av.Packet[AudioStream]]:
        """This rung's AAC packets for `frame` (None: the encoder's last ones), not muxed yet."""
        return [] if self.audio is None else self.audio.encode(frame)

    def mux_audio(self, packets: list[av.Packet[AudioStream]], *, copy: bool) -> None:
        """Mux AAC packets, ours or (`copy`) another rung's: every rung's AAC encoder has the
        same settings, so another's packets fit this stream as they are, and the audio is
        encoded once for the whole ladder instead of once per rung."""
        if self.audio is None:
            return
        for packet in packets:
            if copy:  # muxing takes the packet's data: a copy for each other rung
                packet = _copy_packet(packet)
            packet.stream = self.audio
            self.output.mux(packet)

    def finish_video(self) -> None:
        self._mux_video(self.video.encode(None))

    def close(self) -> None:
        self.output.close()

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, ValueError, OSError):
            self.output.close()


class _VideoJob:
    """Everything derived from one decode pass: rungs, poster, timing."""

    def __init__(
        self,
        out_dir: Path,
        limits: AvLimits,
        video: VideoStream,
        audio: AudioStream | None,
        declared_seconds: float | None,
        review: ModerationPass | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.review = review
        self.sampler = None if review is None else FrameSampler(review, declared_seconds)
        self.limits = limits
        self.pixel_aspect = video.sample_aspect_ratio
        self.time_base = video.time_base or Fraction(1, 90_000)
        rate = video.average_rate or video.guessed_rate or FALLBACK_FRAME_RATE
        self.frame_rate = rate if 1 <= rate <= 240 else FALLBACK_FRAME_RATE
        self.audio_layout = (
            None if audio is None else ("mono" if audio.codec_context.channels == 1 else "stereo")
        )
        self.converter = AudioConverter(
            sample_format="fltp", layout=self.audio_layout or "stereo", rate=AUDIO_RATE
        )
        self.max_seconds = limits.max_video_duration_seconds + DURATION_SLACK_SECONDS
        self.poster_at = limits.poster_seconds
        if declared_seconds is not None and declared_seconds > 0:
            self.poster_at = min(self.poster_at, declared_seconds / 2)
        self.rungs: list[_RungEncoder] = []
        self.display: tuple[int, int] | None = None
        self.pending_audio: list[av.AudioFrame] = []
        self.frames = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.last_duration = 0
        self.next_keyframe = 0.0
        self.next_audio_pts = 0
        self.audio_frames = 0
        self.poster_frame: av.VideoFrame | None = None
        self.poster_taken = False

    @property
    def poster_path(self) -> Path:
        return self.out_dir / POSTER_KEY

    def _start(self, frame: av.VideoFrame) -> None:
        transform = display_transform(frame)
        width, height = display_size(frame.width, frame.height, self.pixel_aspect, transform)
        check_dimensions(width, height, self.limits)
        self.display = (width, height)
        for rung in plan_ladder(width, height, self.limits.ladder):
            self.rungs.append(
                _RungEncoder(
                    rung,
                    self.out_dir / HLS_DIR / rung.name,
                    transform=transform,
                    time_base=self.time_base,
                    frame_rate=self.frame_rate,
                    audio_layout=self.audio_layout,
                    limits=self.limits,
                )
            )
        pending, self.pending_audio = self.pending_audio, []
        for audio_frame in pending:
            self._encode_audio(audio_frame)

    def add_video(self, frame: av.VideoFrame) -> None:
        self.frames += 1
        if self.frames > self.limits.max_frames:
            raise DeriveError("too_many_frames", f"more than {self.limits.max_frames} frames")
        if frame.pts is None:
            if self.last_pts is None:
                frame.pts = 0
            else:
                frame.pts = self.last_pts + max(1, self.last_duration)
        if self.last_pts is not None and frame.pts <= self.last_pts:
            return  # a repeated or backwards timestamp: the muxer would refuse it
        if self.first_pts is None:
            self.first_pts = frame.pts
        elapsed = float((frame.pts - self.first_pts) * self.time_base)
        if elapsed > self.max_seconds:
            raise DeriveError("too_long", "longer than the cap once decoded")
        check_stored_dimensions(frame.width, frame.height, self.limits)  # sizes may change
        if self.display is None:
            self._start(frame)
        if self.last_pts is not None:
            self.last_duration = frame.pts - self.last_pts
        if frame.duration:
            self.last_duration = frame.duration
        self.last_pts = frame.pts

        keyframe = elapsed >= self.next_keyframe
        while self.next_keyframe <= elapsed:
            self.next_keyframe += self.limits.segment_seconds
        top = None
        for rung in self.rungs:
            top = rung.add_video(frame, keyframe=keyframe)
        if self.sampler is not None and top is not None and self.sampler.wants(elapsed):
            self.sampler.take(elapsed, Image.fromarray(top.to_ndarray(format="rgb24")))
        if not self.poster_taken and top is not None:
            if elapsed >= self.poster_at:
                self._save_poster(top)
            else:
                self.poster_frame = top  # the latest candidate, should the video end first

    def add_audio(self, frame: av.AudioFrame) -> None:
        for converted in self.converter.convert(frame):
            if self.display is None:
                self.pending_audio.append(converted)
                if len(self.pending_audio) > MAX_PENDING_AUDIO_FRAMES:
                    raise DeriveError("corrupt_media", "no video frame near the audio")
            else:
                self._encode_audio(converted)

    def _encode_audio(self, frame: av.AudioFrame) -> None:
        # Keep the source's timing (A/V sync) but never let audio overlap or go backwards.
        pts = frame.pts if frame.pts is not None else self.next_audio_pts
        frame.pts = max(pts, self.next_audio_pts)
        frame.time_base = Fraction(1, AUDIO_RATE)
        self.next_audio_pts = frame.pts + frame.samples
        self.audio_frames += 1
        self._mux_audio(self.rungs[0].encode_audio(frame))

    def _mux_audio(self, packets: list[av.Packet[AudioStream]]) -> None:
        """The first rung's AAC packets into every rung (copies first: muxing consumes them)."""
        for rung in self.rungs[1:]:
            rung.mux_audio(packets, copy=True)
        self.rungs[0].mux_audio(packets, copy=False)

    def _save_poster(self, frame: av.VideoFrame) -> None:
        picture = Image.fromarray(frame.to_ndarray(format="rgb24"))
        if self.review is not None:
            self.review.look(picture)
        picture.save(self.poster_path, format="JPEG", quality=POSTER_QUALITY)
        self.poster_taken = True
        self.poster_frame = None

    def finish(self) -> None:
        if self.display is None:
            raise DeriveError("corrupt_media", "no video frame could be decoded")
        for converted in self.converter.flush():
            self._encode_audio(converted)
        for rung in self.rungs:
            rung.finish_video()
        self._mux_audio(self.rungs[0].encode_audio(None))
        for rung in self.rungs:
            rung.close()
        if not self.poster_taken and self.poster_frame is not None:
            self._save_poster(self.poster_frame)

    def abort(self) -> None:
        for rung in self.rungs:
            rung.abort()
        shutil.rmtree(self.out_dir / HLS_DIR, ignore_errors=True)
        self.poster_path.unlink(missing_ok=True)

    @property
    def duration_seconds(self) -> float:
        if self.first_pts is None or self.last_pts is None:
            return 0.0
        return float((self.last_pts + self.last_duration - self.first_pts) * self.time_base)


def _write_master(job: _VideoJob) -> tuple[Path, list[DerivedFile]]:
    """The master playlist, and every file of every rung (playlists and segments)."""
    files: list[DerivedFile] = []
    entries = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    segment_seconds = job.limits.segment_seconds
    for encoder in job.rungs:
        rung, directory = encoder.rung, encoder.directory
        playlist = directory / "index.m3u8"
        segments = read_media_playlist(playlist)
        prefix = f"{HLS_DIR}/{rung.name}"
        files.append(
            DerivedFile(
                key=f"{prefix}/index.m3u8", path=playlist, content_type=PLAYLIST_CONTENT_TYPE
            )
        )
        rates = []
        total_bits = 0
        total_seconds = 0.0
        for segment in segments:
            path = directory / segment.uri
            bits = path.stat().st_size * 8
            total_bits += bits
            total_seconds += segment.seconds
            # A short last segment is mostly headers and a keyframe: it does not set the peak.
            if segment.seconds >= segment_seconds / 2 or len(segments) == 1:
                rates.append(bits / segment.seconds)
            files.append(
                DerivedFile(
                    key=f"{prefix}/{segment.uri}", path=path, content_type=SEGMENT_CONTENT_TYPE
                )
            )
        average = math.ceil(total_bits / total_seconds)
        peak = math.ceil(max(rates, default=average))
        codecs = encoder.codecs or "avc1.640028"  # High@4.0 should no SPS be readable
        if job.audio_layout is not None:
            codecs += f",{AUDIO_CODECS}"
        entries.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={max(peak, average)},AVERAGE-BANDWIDTH={average},"
            f'RESOLUTION={rung.width}x{rung.height},CODECS="{codecs}",'
            f"FRAME-RATE={float(job.frame_rate):.3f}"
        )
        entries.append(f"{rung.name}/index.m3u8")
    master = job.out_dir / MASTER_KEY
    master.write_text("\n".join(entries) + "\n")
    files.insert(0, DerivedFile(key=MASTER_KEY, path=master, content_type=PLAYLIST_CONTENT_TYPE))
    return master, files


def derive_video(
    source: Path, out_dir: Path, *, limits: AvLimits, moderation: Moderation | None = None
) -> Derived:
    """`poster`, `hls` and the video meta of an original (or a blocked verdict)."""
    try:
        return _derive_video(source, out_dir, limits=limits, moderation=moderation, audio_ok=True)
    except _AudioFailed:
        # Decoding failed with the audio in: the same video without it, said in its meta.
        derived = _derive_video(
            source, out_dir, limits=limits, moderation=moderation, audio_ok=False
        )
        derived.meta["audio_dropped"] = "the audio cannot be decoded"
        return derived


class _AudioFailed(Exception):
    """A pass with audio failed to decode: worth a second pass without it."""


def _derive_video(
    source: Path,
    out_dir: Path,
    *,
    limits: AvLimits,
    moderation: Moderation | None,
    audio_ok: bool,
) -> Derived:
    audio_dropped: str | None = None
    with open_input(source, limits) as container:
        video = best_video(container)
        if video is None:
            raise DeriveError("no_streams", "the file has no video stream")
        audio = best_audio(container) if audio_ok else None
        codec = check_codec(video, limits.allowed_video_codecs)
        if audio is not None:
            try:
                check_codec(audio, limits.allowed_audio_codecs)
            except DeriveError as refused:
                audio, audio_dropped = None, refused.message
        declared = check_declared_duration(container, video, limits.max_video_duration_seconds)
        check_stored_dimensions(video.codec_context.width, video.codec_context.height, limits)
        check_frame_count(video, declared, limits)
        mime = original_mime(container, "video")

        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out_dir / HLS_DIR, ignore_errors=True)  # a retry starts from nothing
        video.codec_context.thread_type = "AUTO"
        review = moderation.start() if moderation is not None and moderation.active else None
        job = _VideoJob(out_dir, limits, video, audio, declared, review)
        streams = (video,) if audio is None else (video, audio)
        progress = ProgressFile(out_dir)
        try:
            for decoded in decode(container, *streams, max_packets=limits.max_packets):
                if isinstance(decoded, av.VideoFrame):
                    job.add_video(decoded)
                    if declared:
                        progress.report(job.duration_seconds / declared)
                elif isinstance(decoded, av.AudioFrame):
                    job.add_audio(decoded)
            job.finish()
            master, files = _write_master(job)
        except ModerationBlocked as blocked:
            job.abort()
            assert review is not None
            return Derived(
                meta={"mime": mime, "video_codec": codec},
                blocked_reason=blocked.reason,
                scanned=True,
                nsfw_score=review.nsfw_score,
            )
        except DeriveError as error:
            job.abort()
            if audio is not None and error.code == "corrupt_media":
                raise _AudioFailed from error
            raise
        except BaseException:
            job.abort()
            raise

    assert job.display is not None  # finish() refuses a video without a frame
    top = job.rungs[-1].rung
    poster_size = job.poster_path.stat().st_size
    files.insert(
        0, DerivedFile(key=POSTER_KEY, path=job.poster_path, content_type=POSTER_CONTENT_TYPE)
    )
    width, height = job.display
    meta: dict[str, object] = {
        "width": width,
        "height": height,
        "duration_ms": round(job.duration_seconds * 1000),
        "mime": mime,
        "video_codec": codec,
        "has_audio": job.audio_frames > 0,
    }
    if audio_dropped is not None:
        meta["audio_dropped"] = audio_dropped
    if review is not None:
        meta.update(review.meta())
    return Derived(
        meta=meta,
        files=files,
        variants=[
            DerivedVariant(
                name="poster",
                key=POSTER_KEY,
                content_type=POSTER_CONTENT_TYPE,
                size=poster_size,
                width=top.width,
                height=top.height,
            ),
            DerivedVariant(
                name="hls",
                key=MASTER_KEY,
                content_type=PLAYLIST_CONTENT_TYPE,
                size=master.stat().st_size,
                width=top.width,
                height=top.height,
            ),
        ],
        scanned=review is not None,
        nsfw_score=None if review is None else review.nsfw_score,
    )
