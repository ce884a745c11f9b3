"""What was written and what was shipped: the lines of the web container's logs and the
agent's events, compared line by line (offset, fields, pod identity; nothing missing, extra or
repeated beyond what is allowed)."""

import json
import time
from pathlib import Path

from pods import Failure, NODE, note, wait_for


def read_lines(path):
    """[(offset, text)] of the complete lines of a file."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    lines, offset = [], 0
    for raw in data.split(b"\n")[:-1]:
        lines.append((offset, raw.decode()))
        offset += len(raw) + 1
    return lines


def read_events(path):
    return [json.loads(line) for _, line in read_lines(path)]


def cri_lines(path):
    """[(offset, stream, message)] of a CRI log file (conmon's k8s-file: `time stream tag msg`),
    a line written in pieces (tag P, then F) joined, at the offset of its first piece."""
    out, pieces = [], {}
    for offset, line in read_lines(path):
        _time, stream, tag, message = line.split(" ", 3)
        first, text = pieces.pop(stream, (offset, ""))
        if tag == "P":
            pieces[stream] = (first, text + message)
        else:
            out.append((first, stream, text + message))
    return out


def cri_pieces(path):
    return sum(1 for _, line in read_lines(path) if line.split(" ", 3)[2] == "P")


def compare(lines, events, file, expect, repeats_allowed=0):
    """Every line is shipped, with its fields, under its offset; nothing else is; at most
    `repeats_allowed` events repeat an earlier one (same id). `expect(event, line)` returns a
    mismatch or None. Returns (shipped lines, repeats)."""
    by_offset = {}
    for event in events:
        if event.get("file") != file:
            raise Failure(f"an event of another file: {event.get('file')!r} (expected {file})")
        by_offset.setdefault(event["offset"], []).append(event)
    offsets = {line[0] for line in lines}
    extra = sorted(set(by_offset) - offsets)
    if extra:
        raise Failure(f"{len(extra)} events at offsets with no line, first {extra[:5]}")
    missing = [line[0] for line in lines if line[0] not in by_offset]
    repeats = 0
    for line in lines:
        shipped = by_offset.get(line[0], [])
        for event in shipped:
            mismatch = expect(event, line)
            if mismatch:
                raise Failure(f"line at offset {line[0]}: {mismatch}: {event}")
        if len({e["id"] for e in shipped}) > 1:
            raise Failure(f"line at offset {line[0]} shipped under several ids: {shipped}")
        repeats += max(0, len(shipped) - 1)
    if repeats > repeats_allowed:
        raise Failure(f"{repeats} lines shipped twice (allowed: {repeats_allowed})")
    return len(lines) - len(missing), repeats, missing


def access_line_expect(pod_name, container):
    def expect(event, line):
        fields = json.loads(line[1])
        for key, value in fields.items():
            if event.get(key) != value:
                return f"field {key}: {event.get(key)!r} != {value!r}"
        k8s = event.get("kubernetes", {})
        if k8s.get("pod_name") != pod_name or k8s.get("container_name") != container:
            return f"kubernetes identity {k8s}"
        if k8s.get("node_name") != NODE:
            return f"kubernetes.node_name {k8s.get('node_name')!r} != {NODE!r}"
        return None

    return expect



def shipped_exactly(pod, lines_of, file, expect, what, repeats_allowed=0, timeout=60):
    """Waits until every line is shipped, then checks nothing else or twice was (waiting a
    little longer for late repeats)."""

    def done():
        lines = lines_of()
        count, repeats, _ = compare(lines, read_events(pod.sink), file, expect, repeats_allowed)
        return (lines, repeats) if count == len(lines) else None

    try:
        lines, _ = wait_for(f"every line shipped ({what})", done, timeout=timeout, interval=0.25)
    except Failure:
        lines = lines_of()
        count, repeats, missing = compare(
            lines, read_events(pod.sink), file, expect, repeats_allowed
        )
        raise Failure(
            f"{what}: {count} of {len(lines)} lines shipped after {timeout} s; first missing "
            f"offsets {missing[:5]}"
        ) from None
    time.sleep(1.0)
    count, repeats, _ = compare(lines, read_events(pod.sink), file, expect, repeats_allowed)
    note(
        f"{what}: {len(lines)} lines written, {count} shipped, {repeats} repeated, 0 missing, "
        "0 extra"
    )
    return lines, repeats
