"""workload.py: the deterministic benchmark mail, shaped like the Cyrus
reference workload (../shared/reference/cyrus-figures.md): message i
depends only on (seed, i); sizes log-uniform between 2 KB and 50 KB;
messages over 16 KB are multipart with a base64 attachment of
pseudo-random bytes, smaller ones plain text; 10 users x 4 folders,
1/2 INBOX and 1/6 each other folder."""
import base64
import math
import random

USERS = [f"user{i:02d}" for i in range(10)]
FOLDERS = ["", "Archive", "Sent", "Lists"]


def message(seed, i):
    rng = random.Random(seed * 1000003 + i)
    size = int(math.exp(rng.uniform(math.log(2000), math.log(50000))))
    user = rng.choice(USERS)
    r = rng.random()
    folder = "" if r < 0.5 else FOLDERS[1 + int((r - 0.5) * 6) % 3]
    head = (f"From: sender{i % 97}@example.net\r\nTo: {user}@example.com\r\n"
            f"Subject: benchmark message {i}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <bench-{seed}-{i}@example.net>\r\nMIME-Version: 1.0\r\n")
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    if size <= 16000:
        body = []
        n = len(head) + 40
        while n < size:
            line = " ".join(rng.choice(words) for _ in range(11)) + "\r\n"
            body.append(line)
            n += len(line)
        msg = head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + "".join(body)
    else:
        raw = rng.randbytes(int((size - 900) * 3 / 4))
        b64 = base64.encodebytes(raw).decode().replace("\n", "\r\n")
        msg = (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
               "Content-Type: text/plain\r\n\r\nSee the attachment.\r\n--b1\r\n"
               "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
               'Content-Disposition: attachment; filename="data.bin"\r\n\r\n' + b64 + "--b1--\r\n")
    return user, folder, msg.encode()
