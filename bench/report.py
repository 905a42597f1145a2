"""report.py: turns build/bench/results.jsonl into the generated sections
of docs/benchmarks.md (between <!-- bench:begin --> and <!-- bench:end -->;
the logins under load between <!-- bench:login:begin --> and
<!-- bench:login:end -->), keeping the hand-written text around them. A
section is rewritten only when the results have figures for it."""
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
        if r.get("runs"):
            lines.append("")
            lines.append("| build | program | processes at once | messages/s | CPU ms/message (deliver + tandemd) "
                         "| fsync calls/message |")
            lines.append("|---|---|---|---|---|---|")
            for x in r["runs"]:
                fs = (x.get("fsync") or {}).get("calls_per_message", "-")
                lines.append(f"| {x['build']} | {x.get('program', 'tandem')} | {x['conc']} | {x['msgs_per_s']} | {x['cpu_ms_per_msg']} "
                             f"({x['cpu_ms_per_msg_deliver']} + {x['cpu_ms_per_msg_tandemd']}) | {fs} |")
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
    elif r["bench"] == "shards":
        lines.append("### A sharded channel catching up: 1 shard vs 4")
        lines.append("")
        lines.append(f"{r['deliveries']} deliveries to 20 users logged with the replica down, then the time "
                     "until every shard's log is consumed (includes up to 0.3 s of reconnect wait).")
        lines.append("")
        lines.append("| shards | log lines | s | replica equal |")
        lines.append("|---|---|---|---|")
        for n, k in ((1, "one_shard"), (4, "four_shards")):
            lines.append(f"| {n} | {r[k]['lines']} | {r[k]['seconds']} | {'yes' if r[k]['equal'] else 'NO'} |")
        lines.append("")
        lines.append(f"Speed-up of 4 shards over 1: {r['speedup']}x.")
        lines.append("")
    elif r["bench"] == "rightnow" and r["mode"] == "off":
        on = next((x for x in results if x["bench"] == "rightnow" and x["mode"] == "on"), None)
        lines.append("### Synchronous replication: LMTP with sync_rightnow_channel off and on")
        lines.append("")
        lines.append(f"{r['n']} messages of about 4 KB, one LMTP connection (end of DATA to 250), then "
                     f"{r['n']} over 4 connections; a master and a replica tandemd on loopback.")
        lines.append("")
        lines.append("| rightnow | p50 ms | p95 ms | max ms | msg/s on 4 connections | timeouts/refusals |")
        lines.append("|---|---|---|---|---|---|")
        for x in (r, on):
            if x:
                lines.append(f"| {x['mode']} | {x['lmtp_ms_median']} | {x.get('lmtp_ms_p95', '-')} | "
                             f"{x['lmtp_ms_max']} | {x['concurrent4_msgs_per_s']} | {x['rightnow_problems']} |")
        lines.append("")
    elif r["bench"] == "append_round_trips":
        lines.append("### Round trips per replicated APPEND")
        lines.append("")
        lines.append(f"Median over {r.get('passes')} rolling passes of one delivery each, after a warm-up: "
                     f"{r.get('round_trips_per_append')} round trip(s), {r['commands_per_append']} commands "
                     f"({r['note']}), {r.get('bytes_per_append')} bytes sent for a "
                     f"{r.get('message_bytes_median')}-byte message. " +
                     cy.format("5 round trips per APPEND, 4 with its sync cache"))
        lines.append("")
tp = [r for r in results if r["bench"] in ("tp_initial_sync", "tp_scale_sync")]
if tp:
    lines.append("### Initial sync at scale (issue 12): rate, CPU per message, peak RSS")
    lines.append("")
    lines.append("`bench/bench_throughput.py sync scale`: `tandem sync -A` into an empty replica on this "
                 "machine (csync, loopback: no deflate); the 10,000 workload messages of 10 users x 4 folders, "
                 "then BENCH_SCALE_N messages over BENCH_SCALE_USERS x BENCH_SCALE_FOLDERS. Peak RSS: VmHWM of "
                 "the client and of the replica's session process. Goals: >= 10,000 msg/s, <= 0.1 ms CPU per "
                 "message on each side, <= 64 MB each, the same at 100,000.")
    lines.append("")
    lines.append("| run | messages | msg/s (median) | client ms CPU/msg | replica ms CPU/msg | client MB | replica MB |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in tp:
        n = r["messages"]
        if r["bench"] == "tp_initial_sync":
            what, cc, rc = "10 users x 4 folders", 1000 * r["client_cpu_s"] / n, 1000 * r["replica_cpu_s"] / n
        else:
            what = f"{r['users']} users x {r['folders']} folders, {r['mb']} MB"
            cc, rc = r["client_cpu_ms_per_msg"], r["replica_cpu_ms_per_msg"]
        lines.append(f"| {what} | {n} | {r['msgs_per_s']} | {cc:.3f} | {rc:.3f} | {r['client_hwm_mb']} | "
                     f"{r['replica_hwm_mb']} |")
    lines.append("")
cyr = [r for r in results if r["bench"].startswith("cyrus_")]
if cyr:
    lines.append("### tandem vs Cyrus 3.6, same run")
    lines.append("")
    lines.append("Debian's cyrus-imapd 3.6.1 and tandem on the same machine, the same workload messages, "
                 "alternately; ratio = tandem rate / Cyrus rate (> 1: tandem faster), of medians.")
    lines.append("")
    lines.append("| measurement | tandem | Cyrus 3.6 | ratio |")
    lines.append("|---|---|---|---|")
    notes = []
    for r in cyr:
        if r["bench"] == "cyrus_lmtp":
            lines.append(f"| LMTP delivery, {r['conns']} connection{'s' if r['conns'] > 1 else ''}, "
                         f"{r['messages']} msgs (msgs/s) | {r['tandem_msgs_per_s']} | {r['cyrus_msgs_per_s']} | "
                         f"{r['ratio']} |")
            notes.append(f"LMTP {r['conns']} conn wall s, tandem {r['tandem_s']}, Cyrus {r['cyrus_s']}")
        elif r["bench"] == "cyrus_fetch":
            what = {"list": "headers-only listing", "bodystructure": "BODYSTRUCTURE",
                    "full": "full download"}.get(r["fetch"], r["fetch"])
            for sfx, how in (("", ""), ("_quickack", ", quickack client")):
                if "ratio" + sfx not in r:
                    continue
                lines.append(f"| {what}, `UID FETCH 1:* {r['items']}`, {r['messages']} msgs{how} "
                             f"(msgs/s, median s) | {r['tandem_msgs_per_s' + sfx]} ({r['tandem_s' + sfx]}) | "
                             f"{r['cyrus_msgs_per_s' + sfx]} ({r['cyrus_s' + sfx]}) | {r['ratio' + sfx]} |")
        elif r["bench"] == "cyrus_initial_sync":
            lines.append(f"| initial sync of {r['messages']} msgs ({r['bytes'] / 1e6:.1f} MB) into an empty replica "
                         f"(msgs/s, median wall s) | {r['tandem_msgs_per_s']} ({r['tandem_median_s']}) | "
                         f"{r['cyrus_msgs_per_s']} ({r['cyrus_median_s']}) | {r['ratio']} |")
            notes.append(f"sync wall s, tandem {r['tandem_wall_s']}, Cyrus {r['cyrus_wall_s']}")
    lines.append("")
    reps = sorted({r["reps"] for r in cyr if r["bench"] != "cyrus_fetch"})
    lines.append(f"Repetitions: {', '.join(map(str, reps))} (LMTP, sync), 5 per FETCH in one session after a "
                 "warm-up. LMTP: one message per transaction into the 10 workload users' INBOXes. Sync: "
                 "`tandem sync -u` into a fresh tandemd vs Cyrus `sync_client -u` into a fresh `sync_server`, "
                 "csync with deflate on both. FETCH \"quickack\" rows: the client re-arms TCP_QUICKACK before "
                 "every read. Cyrus's imapd holds its last small segment until the previous one is ACKed "
                 "(Nagle), so an ordinary client often waits for its own delayed ACK (~40 ms per command); "
                 "tandem shows no such stall. The quickack rows compare the servers' own work.")
    if notes:
        lines.append("")
        lines.append("Raw: " + "; ".join(notes) + ".")
    lines.append("")
# logins under load (bench_login.py): a section of its own, between
# <!-- bench:login:begin --> and <!-- bench:login:end -->
login = []
lat = next((r for r in results if r["bench"] == "login_latency"), None)
mixes = [r for r in results if r["bench"] == "login_mix"]  # one per client address mode
mix = mixes[0] if mixes else None
if lat or mix:
    login.append(f"Run of {when}, commit {commit}, {os.cpu_count()} cores, {platform.machine()}"
                 + (f", load average {mix['load1']} at the end of the mix" if mix and "load1" in mix else "") + ".")
    login.append("")
if lat:
    login.append("### LOGIN latency (same user, after a first login; Cyrus 3.6.1 beside, same run)")
    login.append("")
    login.append("| server | warm LOGIN p50 ms | p95 ms | first LOGIN ms |")
    login.append("|---|---|---|---|")
    for k, name in (("tandem", "tandem, login cache on (default)"), ("tandem_nocache", "tandem, auth_cache_size 0"),
                    ("cyrus", "Cyrus 3.6 (sasldb)")):
        if k + "_p50_ms" in lat:
            login.append(f"| {name} | {lat[k + '_p50_ms']} | {lat[k + '_p95_ms']} | {lat[k + '_first_ms']} |")
    login.append("")
    login.append(f"{lat['logins']} timed LOGINs per repetition (connect, LOGIN, LOGOUT each), medians over "
                 f"{lat['reps']} repetitions; the clock runs from LOGIN sent to its tagged OK.")
    login.append("")
if mix:
    login.append(f"### Login-heavy mix: {mix['clients']} clients at once")
    login.append("")
    login.append(f"Each client, as its own user, runs {mix['sessions_per_client']} sessions of connect, LOGIN, "
                 "SELECT INBOX, FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), STORE 1 +FLAGS (\\Deleted), EXPUNGE, "
                 f"LOGOUT ({mix['commands_per_session']} commands), timed after one untimed login per client "
                 "(a server that has run a while; tandem is reloaded only to switch its login cache). Both clients "
                 "re-arm TCP_QUICKACK. Server CPU and minor page faults per session: the master process "
                 "and all its children (alive and reaped) over the run.")
    login.append("")
    for mix in mixes:
        if len(mixes) > 1 or mix.get("client_addresses", 1) > 1:
            n = mix.get("client_addresses", 1)
            login.append("**Clients from one address (127.0.0.1; the conservative figure).**" if n == 1 else
                         f"**Clients from an address each (127.0.1.1-{n}; Cyrus's look-up of each client's host "
                         "name answered from its own /etc/hosts, bench_login.py explains).**")
            login.append("")
        login.append("| server | commands/s (median) | runs | LOGIN p50 ms | LOGIN p95 ms | server CPU ms/session "
                     "| page faults/session |")
        login.append("|---|---|---|---|---|---|---|")
        for k, name in (("tandem", "tandem, login cache on"), ("tandem_nocache", "tandem, auth_cache_size 0"),
                        ("cyrus", "Cyrus 3.6")):
            if k + "_cmds_per_s" in mix:
                login.append(f"| {name} | {mix[k + '_cmds_per_s']} | {', '.join(map(str, mix[k + '_runs']))} | "
                             f"{mix[k + '_login_p50_ms']} | {mix[k + '_login_p95_ms']} | "
                             f"{mix.get(k + '_server_cpu_ms_per_session', '-')} | "
                             f"{mix.get(k + '_page_faults_per_session', '-')} |")
        login.append("")
        ratios = []
        if "ratio" in mix:
            ratios.append(f"tandem with the cache / Cyrus: {mix['ratio']}x")
        if "ratio_nocache" in mix:
            ratios.append(f"without the cache / Cyrus: {mix['ratio_nocache']}x")
        if ratios:
            login.append("Commands per second, " + "; ".join(ratios) + ".")
            login.append("")
    ac = mix.get("tandem_auth_cache")
    if ac:
        login.append(f"tandem's logins over the whole run: {ac['hit']} cache hits, {ac['miss']} misses, "
                     f"{ac['off']} with the cache off, {ac['unanswered']} questions tandemd left unanswered.")
    login.append("")

text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"


def put(text, name, body):
    b, e = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if b not in text:
        text += f"\n{b}\n{e}\n"
    head, rest = text.split(b, 1)
    _, tail = rest.split(e, 1)
    return head + b + "\n" + "\n".join(body) + "\n" + e + tail


if any(not r["bench"].startswith("login_") for r in results):
    text = put(text, "bench", lines)
if login:
    text = put(text, "bench:login", login)
open(doc, "w").write(text)
