"""A throwaway root for installing packages: an overlayfs over the machine's
own / whose writable upper layer is a tmpfs, in a private mount namespace
and a new PID namespace, chrooted into. Maintainer scripts run for real in
it (adduser, pam-auth-update, deb-systemd-helper, ...) and write only to the
upper layer; nothing of the machine's file systems is writable from inside.

    with PkgRoot() as root:
        root.run(["dpkg", "-i", "/tmp/x.deb"], check=True)
        root.path("/etc/passwd")          # the same file, seen from the host

Layout inside:
  /           overlay: lower = the machine's / (read-only through overlay),
              upper = a tmpfs that exists only in the namespace
  /proc       a new proc instance for the new PID namespace, /proc/sys
              and /proc/sysrq-trigger read-only
  /dev        a tmpfs with null, zero, full, random, urandom and tty bound
              from the machine, and a new devpts instance
  /run, /tmp  fresh tmpfs
  /sys        not mounted
The network is the machine's (loopback servers of the test are reachable).

PID 1 of the namespace is a small reaper that exits when this object's pipe
to it closes (stop(), or the test process dying): the kernel then kills
every process left in the namespace and the mounts go with it. Commands run
inside with `nsenter` into its mount and PID namespaces and its root.
"""

import os
import subprocess
import tempfile
import time

SETUP = r'''
set -eu
base=$1
mount -t tmpfs -o mode=0755,size=4g ramkey-pkgroot "$base"
mkdir "$base/upper" "$base/work" "$base/root"
r=$base/root
mount -t overlay ramkey-pkgroot -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$r"
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount --bind "$r/proc/sys" "$r/proc/sys"
mount -o remount,bind,ro "$r/proc/sys"
if [ -e "$r/proc/sysrq-trigger" ]; then
	mount --bind "$r/proc/sysrq-trigger" "$r/proc/sysrq-trigger"
	mount -o remount,bind,ro "$r/proc/sysrq-trigger"
fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for d in null zero full random urandom tty; do
	touch "$r/dev/$d"
	mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -m 0755 "$r/dev/pts"
mkdir -m 1777 "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
echo READY
exec chroot "$r" /usr/bin/python3 -c "$2"
'''

# PID 1 inside: reap whatever is re-parented to it; exit when stdin closes.
REAPER = r'''
import os, sys, threading, time
def watch():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
'''

ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C",
    "DEBIAN_FRONTEND": "noninteractive",
}


class PkgRoot:
    def __init__(self):
        if os.geteuid() != 0:
            raise RuntimeError("PkgRoot needs root")
        self.base = tempfile.mkdtemp(prefix="ramkey-pkgroot-")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
             "--kill-child", "--", "/bin/sh", "-c", SETUP, "sh", self.base, REAPER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = self.proc.stdout.readline().decode().strip()
            if line != "READY":
                err = self.proc.stderr.read().decode(errors="replace")
                raise RuntimeError("could not set up the throwaway root: %s %s"
                                   % (line, err))
            self.pid = self._init_pid()
            st_in, st_out = os.stat("/proc/%d/root/" % self.pid), os.stat("/")
            if (st_in.st_dev, st_in.st_ino) == (st_out.st_dev, st_out.st_ino):
                raise RuntimeError("the throwaway root is the machine's own /")
        except BaseException:
            self.stop()
            raise

    def _init_pid(self, timeout=10.0):
        """The reaper's pid as the machine sees it: the child of unshare
        once it runs python in the chroot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                    kids = [int(p) for p in f.read().split()]
            except OSError:
                kids = []
            for k in kids:
                try:
                    with open("/proc/%d/cmdline" % k, "rb") as f:
                        if f.read().startswith(b"/usr/bin/python3\0-c\0"):
                            return k
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("the throwaway root's init did not start")

    # -- use ---------------------------------------------------------------
    def path(self, p):
        """A path inside the root, as the host reaches it."""
        return "/proc/%d/root/%s" % (self.pid, p.lstrip("/"))

    def argv(self, argv):
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "--"] + list(argv)

    def env(self, extra=None):
        e = dict(ENV)
        e.update(extra or {})
        return e

    def run(self, argv, env=None, timeout=300, check=False, **kw):
        """Run a command inside; returns the CompletedProcess (text)."""
        kw.setdefault("capture_output", True)
        r = subprocess.run(self.argv(argv), env=self.env(env), timeout=timeout, text=True,
                           stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
        if check and r.returncode != 0:
            raise AssertionError("in the throwaway root, %s exited %d:\n%s%s"
                                 % (" ".join(argv), r.returncode, r.stdout or "",
                                    r.stderr or ""))
        return r

    def popen(self, argv, env=None, **kw):
        return subprocess.Popen(self.argv(argv), env=self.env(env), **kw)

    def write(self, p, data, mode=0o644, owner=None):
        """Write a file inside (owner: a "user:group" resolved inside)."""
        full = self.path(p)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(full, mode)
        if owner:
            self.run(["chown", owner, p], check=True)

    def read(self, p):
        with open(self.path(p)) as f:
            return f.read()

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for s in (p.stdout, p.stderr):
            s.close()
        try:
            os.rmdir(self.base)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
