"""test_diskfull.py: an instance on a small tmpfs. Deliveries fail with a
clear "no space" error once the disk is full, nothing already stored is
damaged, and deliveries work again once there is room."""
import os
import subprocess
import tempfile

from tlib import Instance, Suite, make_message

t = Suite("diskfull")
root = tempfile.mkdtemp(prefix="tandem-full-")
mnt = os.path.join(root, "fs")
os.makedirs(mnt)
r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], capture_output=True, text=True)
if r.returncode != 0:
    t.skip("root" if os.geteuid() != 0 else "mount",
           f"every case: cannot mount a tmpfs here ({r.stderr.strip()}); this test needs root", count=3)
    os.rmdir(mnt)
    os.rmdir(root)
    t.done()
inst = None
try:
    inst = Instance(root=mnt, channels="repl1")
    inst.ok(["user", "add", "--no-password", "alice"])
    ok = 0
    failure = None
    with t.case("deliveries until the disk is full"):
        for i in range(400):
            r = inst.run(["deliver", "alice"], make_message(t.rng, i, 60000))
            if r.returncode == 0:
                ok += 1
            else:
                failure = r
                break
        t.check(failure is not None, "the disk filled up")
        if failure:
            t.eq(failure.returncode, 75, "exit status of the failed delivery (EX_TEMPFAIL: the MTA retries)")
            text = failure.stdout + failure.stderr
            t.check("nospace" in text or "No space" in text, f"error names the cause: {text}")
        print(f"  {ok} deliveries fitted")
        t.check(ok > 5, "some deliveries fitted")
    with t.case("nothing stored was damaged"):
        t.eq(len(inst.messages("user.alice")), ok, "every acknowledged message is there")
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, f"check: {r.stdout}{r.stderr}")
    with t.case("more room: deliveries work again"):
        subprocess.run(["mount", "-o", "remount,size=16m", mnt], check=True)
        r = inst.run(["deliver", "alice"], make_message(t.rng, 1000, 60000))
        t.eq(r.returncode, 0, f"deliver after remount: {r.stderr}")
        t.eq(len(inst.messages("user.alice")), ok + 1, "count")
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, f"check: {r.stdout}")
finally:
    subprocess.run(["umount", "-l", mnt])
    subprocess.run(["rm", "-rf", root])
t.done()
