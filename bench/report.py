"""report.py: turns build/bench/results.jsonl into the generated section
of docs/benchmarks.md (between <!-- bench:begin --> and <!-- bench:end -->),
keeping the hand-written text around it."""
import json
import os
import platform
import subprocess
import sys
import time

results = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
doc = sys.argv[2]
lines = []
when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines.append(f"Run of {when}, commit {commit}, {os.cpu_count()} cores, {platform.machine()}.")
lines.append("")
for r in results:
    if r["bench"] == "deliver":
        lines.append("### Local durable delivery (`tandem deliver`)")
        lines.append("")
        lines.append(f"{r['messages']} messages, {r['bytes'] / 1e6:.1f} MB, one `tandem deliver` process per "
                     f"message, {r['reps']} repetitions (wall s: {', '.join(str(w) for w in r['wall_s'])}).")
        lines.append("")
        lines.append("| messages/s (median) | MB/s (median) | median wall s |")
        lines.append("|---|---|---|")
        lines.append(f"| {r['msgs_per_s']} | {r['mb_per_s']} | {r['median_wall_s']} |")
        f = r.get("fsync")
        if f:
            lines.append("")
            lines.append(f"fsync (separate pass of {f['messages']} deliveries under `strace -f -c`): "
                         f"{f['calls']} fsync/fdatasync calls ({f['calls_per_message']} per message), "
                         f"{f['fsync_seconds']} s inside them, {round(100 * f['share'], 1)} % of that pass's "
                         f"wall time ({f['wall_seconds_under_strace']} s, slowed by strace).")
        lines.append("")
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
b, e = "<!-- bench:begin -->", "<!-- bench:end -->"
head, rest = text.split(b, 1)
_, tail = rest.split(e, 1)
open(doc, "w").write(head + b + "\n" + "\n".join(lines) + "\n" + e + tail)
