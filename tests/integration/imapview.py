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
