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
cy = "(Cyrus 3.6.1 reference, cyrus-figures.md: {})"
for r in results:
    if r["bench"] == "lmtp":
        lines.append("### LMTP delivery into tandemd")
        lines.append("")
        lines.append("| connections | messages | messages/s |")
        lines.append("|---|---|---|")
        lines.append(f"| 1 | {r['messages_1conn']} | {r['msgs_per_s_1conn']} |")
        lines.append(f"| 4 | {r['messages_4conn']} | {r['msgs_per_s_4conn']} |")
        lines.append("")
        lines.append(cy.format("lmtpd on one connection 146-202 msg/s"))
        lines.append("")
    elif r["bench"] == "initial_sync":
        lines.append("### Initial sync into an empty replica (`tandem sync -A`, csync, deflate)")
        lines.append("")
        lines.append("| messages | MB | median wall s | messages/s | MB/s | client CPU s | replica CPU s | equal |")
        lines.append("|---|---|---|---|---|---|---|---|")
        lines.append(f"| {r['messages']} | {r['bytes'] / 1e6:.1f} | {r['median_wall_s']} | {r['msgs_per_s']} | "
                     f"{r['mb_per_s']} | {r['client_cpu_s']} | {r['replica_cpu_s']} | {r['equal']} |")
        lines.append("")
        ref = ("10,000 msgs csync 784 msg/s 12.5 MB/s, client 8.19 s, replica 6.61 s CPU; IMAP 1063 msg/s"
               if r["messages"] >= 10000 else "1,000 msgs csync 581 msg/s 9.6 MB/s, client 0.88 s, replica 0.90 s CPU")
        lines.append(f"wall s of the {r['reps']} repetitions: {', '.join(str(w) for w in r['wall_s'])}. " +
                     cy.format(ref))
        lines.append("")
    elif r["bench"] == "latency":
        lines.append("### Rolling latency: LMTP 250 on the master -> the message on the replica")
        lines.append("")
        lines.append(f"{r['n']} deliveries, random pauses 0-{r['pause_max_s']} s; tandemd runs the sync client "
                     f"(inotify wake-up, default sync_repeat_interval).")
        lines.append("")
        lines.append("| p50 s | p95 s | max s |")
        lines.append("|---|---|---|")
        lines.append(f"| {r['p50_s']} | {r['p95_s']} | {r['max_s']} |")
        lines.append("")
        lines.append(cy.format("p50 0.53 s, p95 0.96 s at the default interval; p50 0.053 s, p95 0.097 s at "
                               "sync_repeat_interval 0"))
        lines.append("")
    elif r["bench"] == "append_round_trips":
        lines.append("### Round trips per replicated APPEND")
        lines.append("")
        lines.append(f"{r['commands_per_append']} commands ({r['note']}). " +
                     cy.format("4 work round trips + RESTART: the same"))
        lines.append("")
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
b, e = "<!-- bench:begin -->", "<!-- bench:end -->"
head, rest = text.split(b, 1)
_, tail = rest.split(e, 1)
open(doc, "w").write(head + b + "\n" + "\n".join(lines) + "\n" + e + tail)
