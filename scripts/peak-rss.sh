#!/usr/bin/env bash
# Runs a command and prints the peak of its resident memory, split as the kernel counts it:
# anonymous pages (heap, libtorch's workspace: what must fit in RAM) and file-backed pages
# (the binary, shared libraries, memory-mapped feature files: page cache the kernel can write
# back and drop under pressure). `/usr/bin/time -v` reports only their sum (VmHWM); this
# samples /proc/<pid>/status every 0.1 s, so a peak shorter than that can be missed.
# Usage: scripts/peak-rss.sh command [args...]   (the report goes to stderr)
# With PEAK_RSS_TRACE=FILE, every sample is also appended to FILE as "seconds anon_kB file_kB".
set -euo pipefail
"$@" &
pid=$!
anon=0 file=0 total=0
while kill -0 "$pid" 2>/dev/null; do
    if status=$(cat "/proc/$pid/status" 2>/dev/null); then
        a=$(awk '/^RssAnon:/ {print $2}' <<<"$status")
        f=$(awk '/^RssFile:/ {print $2}' <<<"$status")
        h=$(awk '/^VmHWM:/ {print $2}' <<<"$status")
        [[ -n "$a" && "$a" -gt "$anon" ]] && anon=$a
        [[ -n "$f" && "$f" -gt "$file" ]] && file=$f
        [[ -n "$h" && "$h" -gt "$total" ]] && total=$h
        [[ -n "${PEAK_RSS_TRACE:-}" ]] && echo "$SECONDS $a $f" >>"$PEAK_RSS_TRACE"
    fi
    sleep 0.1
done
rc=0
wait "$pid" || rc=$?
echo "peak-rss: anon ${anon} kB, file ${file} kB, VmHWM ${total} kB, exit ${rc}" >&2
exit "$rc"
