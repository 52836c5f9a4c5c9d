"""A detailed 720p30 clip → poster + HLS ladder: Ferry's `derive_video` against the ffmpeg CLI.

Both run as fresh processes, timed from this one (`wait4`: wall, CPU of every thread, peak RSS):

- `ferry`: `python -m bench.video_hls --child SOURCE OUT`, the worker's derivation;
- `ffmpeg`: one `ffmpeg` command with the same ladder (rungs, bit rates, maxrate 1.5x,
  bufsize 2x), the same x264 preset, keyframes forced at every segment boundary, AAC per rung,
  the same HLS muxer options and a poster JPEG; one decode split into every output, as Ferry's.

And a phone-size voice note (60 s of speech-like AAC in .m4a) → Opus `voice_low`: Ferry's
`derive_voice` against `ffmpeg -c:a libopus` at the same bit rate (the anchor draws no waveform).
Numbers only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.media import ffmpeg
from bench.procs import ChildRun, own_peak_kib, run_command, run_module


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def ffmpeg_ladder_command(source: Path, out: Path, settings: dict[str, Any]) -> list[str]:
    """The ffmpeg CLI doing what `derive_video` does for a 16:9 landscape source."""
    tool = ffmpeg()
    assert tool is not None
    rungs = [(_even(short * 16 / 9), short, rate) for short, rate in settings["ladder"]]
    seg = settings["segment_seconds"]
    splits = "".join(f"[s{n}]" for n in range(len(rungs)))
    graph = [f"[0:v]split={len(rungs) + 1}{splits}[p]"]
    graph += [
        f"[s{n}]scale={w}:{h},setsar=1,format=yuv420p[v{n}]" for n, (w, h, _) in enumerate(rungs)
    ]
    graph.append(f"[p]trim=start={settings['poster_seconds']},setpts=PTS-STARTPTS[poster]")
    command = [tool, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
               "-filter_complex", ";".join(graph)]  # fmt: skip
    for n, (_, h, rate) in enumerate(rungs):
        directory = out / f"{h}p"
        directory.mkdir(parents=True, exist_ok=True)
        command += [
            "-map", f"[v{n}]", "-map", "0:a?",
            "-c:v", "libx264", "-preset", settings["preset"], "-b:v", str(rate),
            "-maxrate", str(rate * 3 // 2), "-bufsize", str(rate * 2),
            "-force_key_frames", f"expr:gte(t,n_forced*{seg})", "-g", str(2 * 30 * seg),
            "-c:a", "aac", "-b:a", str(settings["audio_bitrate"]),
            "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
            "-hls_list_size", "0", "-hls_segment_type", "mpegts",
            "-hls_segment_filename", str(directory / "seg_%05d.ts"),
            "-hls_flags", "independent_segments", str(directory / "index.m3u8"),
        ]  # fmt: skip
    command += ["-map", "[poster]", "-frames:v", "1", "-q:v", "3", str(out / "poster.jpg")]
    return command


def ffmpeg_voice_command(source: Path, out: Path, settings: dict[str, Any]) -> list[str]:
    tool = ffmpeg()
    assert tool is not None
    out.mkdir(parents=True, exist_ok=True)
    return [tool, "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-vn",
            "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-application", "voip",
            "-b:a", str(settings["voice_bitrate"]), str(out / "voice_low.ogg")]  # fmt: skip


def _output_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _row(run: ChildRun, out: Path) -> dict[str, Any]:
    return {
        "wall": run.wall,
        "cpu": run.cpu,
        "peak_kib": run.report.get("peak_kib", run.maxrss_kib),
        "output_bytes": _output_bytes(out),
    }


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The least wall time and the least CPU of the repeats: on a shared machine the smallest
    is the nearest to what the work itself costs."""
    best = dict(min(rows, key=lambda row: row["wall"]))
    best["cpu"] = min(row["cpu"] for row in rows)
    best["repeats"] = len(rows)
    return best


def measure(kind: str, source: Path, scratch: Path, repeats: int = 1) -> dict[str, Any]:
    """`kind` is "video" or "voice": Ferry's derivation and the ffmpeg CLI's of `source`,
    alternating, `repeats` times each."""
    from bench.adapter import video_settings

    settings = video_settings()
    ferry_rows: list[dict[str, Any]] = []
    anchor_rows: list[dict[str, Any]] = []
    for repeat in range(repeats):
        ferry_out = scratch / f"{kind}-ferry-{repeat}"
        ferry = run_module("bench.video_hls", "--child", kind, str(source), str(ferry_out))
        ferry_rows.append(_row(ferry, ferry_out))
        if ffmpeg() is not None:
            anchor_out = scratch / f"{kind}-ffmpeg-{repeat}"
            anchor_out.mkdir(parents=True, exist_ok=True)
            make = ffmpeg_ladder_command if kind == "video" else ffmpeg_voice_command
            anchor_rows.append(_row(run_command(make(source, anchor_out, settings)), anchor_out))
    results: dict[str, Any] = {"ferry": _best(ferry_rows), "settings": settings}
    if anchor_rows:
        results["ffmpeg"] = _best(anchor_rows)
    return results


def child(kind: str, source: Path, out: Path) -> dict[str, Any]:
    from bench.adapter import ferry_video, ferry_voice

    made = ferry_video(source, out) if kind == "video" else ferry_voice(source, out)
    return {**made, "peak_kib": own_peak_kib()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        print(json.dumps(child(args[1], Path(args[2]), Path(args[3]))))
        return 0
    print("run `python -m bench` (this module is one of its parts)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
