"""imapview.py: what a user's IMAP client sees, in comparable form, for
tests that ask tandem and Cyrus the same questions (test_cyrus_state.py,
test_cyrus_failover.py)."""
import re


def flags_of(im, mailbox):
    """{uid: sorted flags} of a mailbox as this login sees it."""
    typ, _ = im.select(mailbox, readonly=True)
    if typ != "OK":
        return None
    typ, data = im.uid("FETCH", "1:*", "(UID FLAGS)")
    out = {}
    for d in data:
        if not d:
            continue
        line = d.decode() if isinstance(d, bytes) else d[0].decode()
        m = re.search(r"UID (\d+)", line)
        f = re.search(r"FLAGS \(([^)]*)\)", line)
        if m and f:
            out[int(m.group(1))] = sorted(x for x in f.group(1).split() if x != "\\Recent")
    im.close()
    return out


def bodies_of(im, mailbox):
    """{uid: body bytes} of a mailbox."""
    typ, _ = im.select(mailbox, readonly=True)
    if typ != "OK":
        return None
    typ, data = im.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    out = {}
    for d in data:
        if isinstance(d, tuple):
            out[int(re.search(r"UID (\d+)", d[0].decode()).group(1))] = d[1]
    im.close()
    return out


def metadata_pairs(data):
    """{entry: value} from METADATA responses (quoting and order aside)."""
    out = {}
    for x in data:
        if not x:
            continue
        text = x.decode() if isinstance(x, bytes) else " ".join(p.decode() for p in x if isinstance(p, bytes))
        inner = text[text.index("(") + 1:text.rindex(")")]
        toks = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', inner)
        vals = [q if q or not a else a for q, a in toks]
        for k, v in zip(vals[0::2], vals[1::2]):
            out[k] = None if v == "NIL" else v
    return out


# ---- the independent IMAP oracle ---------------------------------------------
#
# What a user's IMAP client sees of its whole account, in a form two
# servers' answers can be compared with ==: used by tlib.imap_oracle to
# decide "replica equal to master" without tandem's own `compare`.

def _imap_cmd(im, name, *args):
    """Runs an IMAP command imaplib may not know; (typ, untagged lines of
    `name` as bytes)."""
    import imaplib
    imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    typ, data = im._simple_command(name, *args)
    key = {"GETACL": "ACL", "GETMETADATA": "METADATA", "GETQUOTAROOT": "QUOTA", "LISTRIGHTS": "LISTRIGHTS",
           "MYRIGHTS": "MYRIGHTS"}.get(name, name)
    out = []
    for k in (key, "QUOTAROOT") if name == "GETQUOTAROOT" else (key,):
        _, got = im._untagged_response(typ, data, k)
        out += [(k.encode() + b" ") + (x if isinstance(x, bytes) else b" ".join(p for p in x if isinstance(p, bytes)))
                for x in got if x]
    return typ, sorted(out)


def _fetch_records(data):
    """[(text of the response without literals, literal bytes or None)] of a
    FETCH response as imaplib returns it."""
    recs = []
    for d in data:
        if isinstance(d, tuple):
            recs.append([d[0], d[1]])
        elif isinstance(d, bytes) and recs and not re.match(rb"^\d+ \(", d):
            recs[-1][0] += d
        elif isinstance(d, bytes):
            recs.append([d, None])
    return recs


def mailbox_view(im, name):
    """{uidvalidity, uidnext, highestmodseq, messages: {uid: {...}}} of one
    mailbox, read-only (EXAMINE, BODY.PEEK: nothing changes)."""
    import hashlib
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    typ, data = im._simple_command("EXAMINE", quoted)
    if typ != "OK":
        return {"examine": typ}
    im.state = "SELECTED"
    view = {}
    for key in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "EXISTS"):
        _, v = im._untagged_response(typ, data, key)
        view[key.lower()] = v[-1].decode() if v and v[-1] else None
    im.untagged_responses.clear()
    msgs = {}
    if view.get("exists") not in (None, "0"):
        typ, data = im.uid("FETCH", "1:*", "(UID FLAGS MODSEQ RFC822.SIZE INTERNALDATE BODY.PEEK[])")
        for text, body in _fetch_records(data):
            t = text.decode("utf-8", "replace")
            uid = re.search(r"\bUID (\d+)", t)
            if not uid:
                continue
            flags = re.search(r"FLAGS \(([^)]*)\)", t)
            msgs[int(uid.group(1))] = {
                "flags": sorted(f for f in (flags.group(1).split() if flags else []) if f != "\\Recent"),
                "modseq": (re.search(r"MODSEQ \((\d+)\)", t) or [None, None])[1],
                "size": (re.search(r"RFC822\.SIZE (\d+)", t) or [None, None])[1],
                "internaldate": (re.search(r'INTERNALDATE "([^"]*)"', t) or [None, None])[1],
                "sha1": hashlib.sha1(body).hexdigest() if body is not None else None,
            }
    view["messages"] = msgs
    im._simple_command("CLOSE")
    im.state = "AUTH"
    return view


def client_view(port, user, password, host="127.0.0.1"):
    """Everything user's IMAP client can see of its account on the server
    at port: the folder list (LIST with attributes), subscriptions (LSUB),
    and per folder UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, and per UID the
    flags, MODSEQ, RFC822.SIZE, INTERNALDATE and the SHA-1 of BODY.PEEK[];
    the folder's ACL (GETACL, where the user may read it), its annotations
    (GETMETADATA, DEPTH infinity, /shared and /private) and its quota
    (GETQUOTAROOT)."""
    import imaplib
    im = imaplib.IMAP4(host, port, timeout=60)
    try:
        im.login(user, password)
        _imap_cmd(im, "ENABLE", "CONDSTORE")	# HIGHESTMODSEQ from the first EXAMINE on
        view = {}
        typ, data = im.list('""', "*")
        folders = {}
        for x in data:
            if not x:
                continue
            line = x.decode("utf-8", "replace") if isinstance(x, bytes) else \
                " ".join(p.decode("utf-8", "replace") for p in x if isinstance(p, bytes))
            m = re.match(r'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
            if m:
                name = m.group(2)
                if name.startswith('"') and name.endswith('"'):
                    name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                folders[name] = sorted(m.group(1).split())
        view["list"] = folders
        typ, data = im.lsub('""', "*")
        view["lsub"] = sorted(x for x in data if x)
        for name, attrs in sorted(folders.items()):
            fv = {}
            if "\\Noselect" not in attrs and "\\NonExistent" not in attrs:
                fv = mailbox_view(im, name)
            quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            fv["acl"] = _imap_cmd(im, "GETACL", quoted)
            fv["metadata"] = _imap_cmd(im, "GETMETADATA", "(DEPTH infinity)", quoted, "(/shared /private)")
            fv["quota"] = _imap_cmd(im, "GETQUOTAROOT", quoted)
            view["folder " + name] = fv
        return view
    finally:
        try:
            im.logout()
        except Exception:  # noqa: BLE001
            pass


def view_diffs(a, b, path=""):
    """The differences between two views, as readable lines."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}{k}: only on the second side: {b[k]!r:.200}")
            elif k not in b:
                out.append(f"{path}{k}: only on the first side: {a[k]!r:.200}")
            else:
                out += view_diffs(a[k], b[k], f"{path}{k}/")
    elif a != b:
        out.append(f"{path.rstrip('/')}: {a!r:.300} != {b!r:.300}")
    return out
