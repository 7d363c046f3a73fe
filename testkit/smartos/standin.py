#!/usr/bin/python3
"""Stand-ins for SmartOS's vmadm(8), zfs(8), imgadm(8), zlogin(1) and
sysinfo(8), for testing sdc-docker's SmartOS zone driver on Linux.

    SDC_STANDIN_ROOT=ROOT python3 standin.py TOOL [ARGS...]

One program, dispatching on TOOL (vmadm, zfs, imgadm, zlogin, sysinfo). The
test fixture (testkit/src/smartos.rs) writes ROOT/bin/TOOL wrappers that set
SDC_STANDIN_ROOT and exec this file, so callers need no environment. Python 3
standard library only; it runs as root (chroot, namespaces, mounts).

What each tool does, and where it differs from the platform, is described in
the docstring of its entry point (`vmadm_main`, `zfs_main`, `imgadm_main`,
`zlogin_main`, `sysinfo_main`). Messages and exit codes are the platform's
own where the platform's sources say what they are.

State layout under ROOT (all of it, nothing outside ROOT is written):

    bin/TOOL                        wrappers (written by the fixture)
    sysinfo.json                    what `sysinfo` prints (fixture)
    calls.jsonl                     one line per invocation, see record_call
    .lock                           flock guarding every read-modify-write
    .zfs/datasets.json              datasets and snapshots: type, origin,
                                    creation, properties
    .zfs/snapshots/DS@SNAP/         a snapshot: full copy (cp -a) of DS
    zones/                          mountpoint of the pool dataset `zones`
    zones/NAME/                     mountpoint of dataset zones/NAME
    zones/UUID/root/                a zone's root file system
    zones/UUID/logs/stdio.log       zoneadmd's log of the zone's init
    zones/UUID/.standin/stdin       FIFO: the init's stdin (docker:open_stdin)
    var/imgadm/images/zones-UUID.json   imgadm's database: {manifest, zpool}
    imgapi/UUID.json, imgapi/UUID/  a local "image source" for imgadm import
    .vmadm/UUID.json                a VM object, as `vmadm get` prints it
    .vmadm/UUID.run.json            the stand-in's run state of the VM
                                    (supervisor pid, init pid, run counters)
    .vmadm/UUID.supervisor.log      the supervisor's own stderr
    .fail/vmadm-create              failure injection, see vmadm_create

A running zone is a supervisor process (`standin.py _supervise UUID`, its own
session) whose child makes new mount, PID and UTS namespaces, mounts /proc,
a small /dev and the VM's lofs `filesystems` under the zone root, and forks
the zone's init: PID 1 of the new PID namespace, chrooted into the zone root.
The init's stdout and stderr are logged to stdio.log the way zoneadmd logs
them; `zlogin` enters the init's namespaces to run commands in the zone, so
`kill -1` in a zone reaches only that zone's processes.
"""

import codecs
import ctypes
import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
import uuid as uuidlib

POOL = "zones"
ROOT = None

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# dockerinit's defaults (src/dockerinit/src/docker-common.h).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERM = "xterm"

# dockerinit's exit codes (dockerinit_err_t, docker-common.h).
ERR_CHDIR = 2
ERR_EXEC_FAILED = 3
ERR_GID_NAN = 5
ERR_INITGROUPS = 6
ERR_NO_COMMAND = 13
ERR_NOT_FOUND = 17
ERR_OPEN = 18
ERR_PARSE_JSON = 20
ERR_SETGID = 23
ERR_SETUID = 24
ERR_STAT_CMD = 25
ERR_STAT_DIR = 26
ERR_STAT_EXEC = 27
ERR_UID_NAN = 29
ERR_ATTACH_NOT_TIMESTAMP = 43
ERR_ATTACH_TIMEDOUT = 45
ERR_MKDIR = 49

# Docker's restart back-off (vmadmd.js): a container that ran longer than
# this many seconds restarts after the initial delay again.
DOCKER_RUNTIME_DELAY_RESET = 10.0


class Fail(Exception):
    """A tool's error: `message` goes to stderr, `code` is the exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


class Done(Exception):
    """Leave the tool now with `code` (its output is already written)."""

    def __init__(self, code=0):
        super().__init__(code)
        self.code = code


# --------------------------------------------------------------------------
# Common helpers
# --------------------------------------------------------------------------


def rp(*parts):
    """A path under ROOT."""
    return os.path.join(ROOT, *parts)


class Lock:
    """The flock on ROOT/.lock, re-entrant within one process."""

    depth = 0
    fd = None

    def __enter__(self):
        if Lock.depth == 0:
            fd = os.open(rp(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            Lock.fd = fd
        Lock.depth += 1
        return self

    def __exit__(self, *exc):
        Lock.depth -= 1
        if Lock.depth == 0:
            os.close(Lock.fd)
            Lock.fd = None
        return False


def read_json(path, default=None):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return default


def write_json(path, value, indent=2):
    """Atomically replaces `path` with `value` as JSON."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(value, f, indent=indent, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def iso_ms(t=None):
    """RFC 3339 UTC with milliseconds, as vmadm prints timestamps."""
    if t is None:
        t = time.time()
    ms = int(round(t * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (
        ms % 1000
    )


def iso_ns(ns):
    """RFC 3339 UTC with nanoseconds, as zoneadmd stamps log entries."""
    secs, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%09dZ" % rem


def is_uuid(s):
    return isinstance(s, str) and bool(UUID_RE.match(s))


def cp_a(src, dst):
    """`cp -a` (symlinks, modes, owners, times, device nodes and FIFOs kept)."""
    r = subprocess.run(
        ["cp", "-a", "--reflink=auto", src, dst],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if r.returncode != 0:
        raise OSError("cp -a %s %s failed: %s" % (src, dst, r.stderr.decode(errors="replace").strip()))


def rmtree(path):
    """Removes a tree without following symlinks; absent is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def proc_state(pid):
    """The state letter of process `pid` (None when it does not exist)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def proc_ppid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[1])


def alive(pid):
    """Whether `pid` is a live process (zombies are dead)."""
    if not pid:
        return False
    s = proc_state(pid)
    return s is not None and s not in ("Z", "X")


def stderr(msg):
    sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Linux primitives (ctypes: Python 3.11 has no os.unshare / os.setns)
# --------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _b(s):
    return None if s is None else os.fsencode(s)


def sys_mount(source, target, fstype, flags, data=None):
    _check(libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount %s" % target)


def sys_unshare(flags):
    _check(libc().unshare(flags), "unshare")


def sys_setns(fd, nstype):
    _check(libc().setns(fd, nstype), "setns")


def sys_sethostname(name):
    data = name.encode()
    _check(libc().sethostname(data, len(data)), "sethostname")


def die_with_parent(parent_pid):
    """SIGKILL this process when its parent dies. (A namespace's init sees
    its parent, outside the namespace, as pid 0.)"""
    libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() not in (parent_pid, 0):
        os._exit(1)


def reset_signals():
    """Default dispositions and an empty mask, as a freshly exec'd process
    expects (Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignores)."""
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def secure_join(root, path):
    """`path` resolved inside `root`: symlinks are followed as if `root`
    were `/`, so nothing resolves outside it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, "too many levels of symbolic links: %s" % path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


# --------------------------------------------------------------------------
# Call recording
# --------------------------------------------------------------------------

PAYLOAD = {"stdin": None}


def record_call(tool, args, code):
    """Appends {"tool", "args", "stdin", "exit"} to ROOT/calls.jsonl; stdin
    is the payload read from standard input, or null when none was."""
    line = json.dumps(
        {"tool": tool, "args": args, "stdin": PAYLOAD["stdin"], "exit": code},
        separators=(",", ":"),
    )
    fd = os.open(rp("calls.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = (line + "\n").encode()
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)


def read_stdin_payload():
    data = sys.stdin.buffer.read()
    text = data.decode("utf-8", errors="replace")
    PAYLOAD["stdin"] = text
    return text


# --------------------------------------------------------------------------
# zfs
# --------------------------------------------------------------------------

DS_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)*$")
SNAP_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")

# Native properties `zfs create -o` / `zfs set` accept (stored, not enforced).
ZFS_SETTABLE = {
    "quota",
    "refquota",
    "reservation",
    "refreservation",
    "compression",
    "recordsize",
    "atime",
    "canmount",
    "devices",
    "exec",
    "setuid",
    "readonly",
    "zoned",
    "snapdir",
    "sync",
    "checksum",
    "copies",
    "logbias",
    "primarycache",
    "secondarycache",
    "filesystem_limit",
    "snapshot_limit",
    "xattr",
    "dedup",
}
ZFS_DEFAULTS = {
    "quota": "none",
    "refquota": "none",
    "reservation": "none",
    "refreservation": "none",
    "compression": "off",
    "recordsize": "128K",
    "atime": "on",
    "canmount": "on",
    "devices": "on",
    "exec": "on",
    "setuid": "on",
    "readonly": "off",
    "zoned": "off",
    "snapdir": "hidden",
    "sync": "standard",
    "checksum": "on",
    "copies": "1",
    "logbias": "latency",
    "primarycache": "all",
    "secondarycache": "all",
    "filesystem_limit": "none",
    "snapshot_limit": "none",
    "xattr": "on",
    "dedup": "off",
}
ZFS_READONLY = {
    "name",
    "type",
    "creation",
    "used",
    "available",
    "avail",
    "referenced",
    "refer",
    "origin",
    "mountpoint",
    "mounted",
}


class Zfs:
    """The pool's datasets, loaded from and saved to datasets.json. Use it
    with the state lock held."""

    def __init__(self):
        self.path = rp(".zfs", "datasets.json")
        self.ds = read_json(self.path, {})
        if POOL not in self.ds:
            self.ds[POOL] = {"type": "filesystem", "creation": int(time.time()), "props": {}}
            os.makedirs(rp(POOL), exist_ok=True)
            self.save()

    def save(self):
        write_json(self.path, self.ds)

    def exists(self, name):
        return name in self.ds

    def kind(self, name):
        return self.ds[name]["type"]

    @staticmethod
    def mountpoint(name):
        return os.path.join(ROOT, *name.split("/"))

    @staticmethod
    def snapshot_dir(name):
        ds, snap = name.split("@", 1)
        parts = ds.split("/")
        return os.path.join(ROOT, ".zfs", "snapshots", *parts[:-1], parts[-1] + "@" + snap)

    def children(self, name):
        """Datasets under `name` (descendants and snapshots), deepest first."""
        out = [d for d in self.ds if d.startswith(name + "/") or d.startswith(name + "@")]
        return sorted(out, key=lambda d: (-d.count("/"), "@" not in d, d))

    def clones_of(self, snap):
        return sorted(d for d, rec in self.ds.items() if rec.get("origin") == snap)

    def check_name(self, name, what, allow_snapshot=False):
        ds = name.split("@", 1)[0]
        if "@" in name and not allow_snapshot:
            raise Fail("cannot %s '%s': snapshot delimiter '@' is not expected here" % (what, name))
        if not DS_NAME_RE.match(ds) or ("@" in name and not SNAP_NAME_RE.match(name.split("@", 1)[1])):
            raise Fail("cannot %s '%s': invalid character in name" % (what, name))
        pool = ds.split("/")[0]
        if pool != POOL:
            raise Fail("cannot %s '%s': no such pool '%s'" % (what, name, pool))

    def parse_props(self, props, what, name):
        out = {}
        for kv in props:
            if "=" not in kv:
                raise Fail("missing '=' for property=value argument", 2)
            k, v = kv.split("=", 1)
            if k == "mountpoint":
                raise Fail("cannot %s '%s': the stand-in keeps every dataset at its default mountpoint" % (what, name))
            if ":" in k:
                out[k] = v
            elif k in ZFS_SIZES:
                n = parse_size(v)
                if n is None:
                    raise Fail("cannot %s '%s': bad numeric value '%s'" % (what, name, v))
                out[k] = str(n) if n else "none"
            elif k in ZFS_SETTABLE:
                out[k] = v
            elif k in ZFS_READONLY:
                raise Fail("cannot %s '%s': '%s' is readonly" % (what, name, k))
            else:
                raise Fail("cannot %s '%s': invalid property '%s'" % (what, name, k))
        return out

    def _ensure_parent(self, name, parents, what):
        parent = name.rsplit("/", 1)[0]
        if self.exists(parent):
            return
        if not parents:
            raise Fail("cannot %s '%s': parent does not exist" % (what, name))
        self._ensure_parent(parent, True, what)
        self._make_fs(parent, {})

    def _make_fs(self, name, props, origin=None):
        mp = self.mountpoint(name)
        if os.path.isdir(mp) and os.listdir(mp) and origin is None:
            raise Fail("cannot mount '%s': directory is not empty" % mp)
        os.makedirs(mp, exist_ok=True)
        rec = {"type": "filesystem", "creation": int(time.time()), "props": props}
        if origin:
            rec["origin"] = origin
        self.ds[name] = rec

    def create(self, name, props, parents=False):
        self.check_name(name, "create")
        props = self.parse_props(props, "create", name)
        if self.exists(name):
            raise Fail("cannot create '%s': dataset already exists" % name)
        self._ensure_parent(name, parents, "create")
        self._make_fs(name, props)
        self.save()

    def snapshot(self, name):
        if "@" not in name:
            raise Fail("cannot create snapshot '%s': empty component or misplaced '@' or '#' delimiter in name" % name)
        self.check_name(name, "create snapshot", allow_snapshot=True)
        ds = name.split("@", 1)[0]
        if not self.exists(ds) or self.kind(ds) != "filesystem":
            raise Fail("cannot open '%s': dataset does not exist" % ds)
        if self.exists(name):
            raise Fail("cannot create snapshot '%s': dataset already exists" % name)
        target = self.snapshot_dir(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        rmtree(target)
        cp_a(self.mountpoint(ds), target)
        # A snapshot holds its own dataset only, not its children.
        for child in self.ds:
            if child.startswith(ds + "/") and "@" not in child:
                rmtree(os.path.join(target, os.path.relpath(self.mountpoint(child), self.mountpoint(ds))))
        self.ds[name] = {"type": "snapshot", "creation": int(time.time()), "props": {}}
        self.save()

    def clone(self, snap, target, props, parents=False):
        if "@" not in snap:
            raise Fail("cannot open '%s': operation only applies to snapshots" % snap)
        if not self.exists(snap):
            raise Fail("cannot open '%s': dataset does not exist" % snap)
        self.check_name(target, "create")
        props = self.parse_props(props, "create", target)
        if self.exists(target):
            raise Fail("cannot create '%s': dataset already exists" % target)
        self._ensure_parent(target, parents, "create")
        mp = self.mountpoint(target)
        if os.path.isdir(mp) and os.listdir(mp):
            raise Fail("cannot mount '%s': directory is not empty" % mp)
        rmtree(mp)
        os.makedirs(os.path.dirname(mp), exist_ok=True)
        cp_a(self.snapshot_dir(snap), mp)
        self.ds[target] = {
            "type": "filesystem",
            "creation": int(time.time()),
            "props": props,
            "origin": snap,
        }
        self.save()

    def busy(self, name):
        """Whether a running zone uses dataset `name`'s file system."""
        mp = self.mountpoint(name)
        for vm in all_vms():
            if vm.get("state") == "running":
                zp = vm.get("zonepath", "")
                if zp == mp or zp.startswith(mp + "/"):
                    return True
        return False

    def destroy(self, name, recursive=False, dependents=False):
        if "@" in name:
            if not self.exists(name):
                raise Fail("could not find any snapshots to destroy; check snapshot names.")
            doomed = [name]
        else:
            if not self.exists(name):
                raise Fail("cannot open '%s': dataset does not exist" % name)
            if name == POOL:
                raise Fail(
                    "cannot destroy '%s': operation does not apply to pools\n"
                    "use 'zfs destroy -r %s' to destroy all datasets in the pool\n"
                    "use 'zpool destroy %s' to destroy the pool itself" % (name, name, name)
                )
            children = self.children(name)
            if children and not (recursive or dependents):
                raise Fail(
                    "cannot destroy '%s': filesystem has children\n"
                    "use '-r' to destroy the following datasets:\n%s" % (name, "\n".join(children))
                )
            doomed = children + [name]
        # Clones of the snapshots to destroy, and theirs, with -R.
        todo = list(doomed)
        while True:
            clones = []
            for d in todo:
                if "@" in d:
                    clones += [c for c in self.clones_of(d) if c not in doomed and c not in clones]
            if not clones:
                break
            if not dependents:
                what = "snapshot" if "@" in name else "filesystem"
                raise Fail(
                    "cannot destroy '%s': %s has dependent clones\n"
                    "use '-R' to destroy the following datasets:\n%s" % (name, what, "\n".join(clones))
                )
            todo = []
            for c in clones:
                more = self.children(c) + [c]
                doomed = more + doomed
                todo += more
        for d in doomed:
            if "@" not in d and self.busy(d):
                raise Fail("cannot unmount '%s': Device busy" % self.mountpoint(d))
        doomed = sorted(set(doomed), key=lambda d: (-d.count("/"), "@" not in d, d))
        for d in doomed:
            if "@" in d:
                rmtree(self.snapshot_dir(d))
            else:
                rmtree(self.mountpoint(d))
            del self.ds[d]
        self.save()

    def set(self, kv, name):
        if not self.exists(name):
            raise Fail("cannot open '%s': dataset does not exist" % name)
        props = self.parse_props([kv], "set property for", name)
        self.ds[name].setdefault("props", {}).update(props)
        self.save()

    # -- reading ---------------------------------------------------------

    def du(self, name, descendants):
        """Bytes of `name`'s files (with its descendants' when asked)."""
        if self.kind(name) == "snapshot":
            return 0
        total = 0
        mp = self.mountpoint(name)
        skip = set()
        if not descendants:
            skip = {self.mountpoint(c) for c in self.ds if c.startswith(name + "/") and "@" not in c}
        for dirpath, dirnames, filenames in os.walk(mp):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
            for f in filenames + dirnames:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    def prop(self, name, prop, parsable):
        """(value, source) of `prop` on `name`; None for an unknown one."""
        rec = self.ds[name]
        kind = rec["type"]
        if prop == "name":
            return name, "-"
        if prop == "type":
            return kind, "-"
        if prop == "creation":
            c = rec["creation"]
            return (str(c) if parsable else time.strftime("%a %b %d %H:%M %Y", time.localtime(c))), "-"
        if prop in ("used", "referenced", "refer"):
            n = self.du(name, descendants=(prop == "used"))
            return (str(n) if parsable else human(n)), "-"
        if prop in ("available", "avail"):
            if kind == "snapshot":
                return "-", "-"
            st = os.statvfs(ROOT)
            n = st.f_bavail * st.f_frsize
            return (str(n) if parsable else human(n)), "-"
        if prop == "origin":
            return rec.get("origin", "-"), "-"
        if prop == "mountpoint":
            if kind == "snapshot":
                return "-", "-"
            return self.mountpoint(name), "default"
        if prop == "mounted":
            return ("-" if kind == "snapshot" else "yes"), "-"
        if prop in rec.get("props", {}):
            v = rec["props"][prop]
            if prop in ZFS_SIZES and v != "none" and not parsable:
                v = human(int(v))
            return v, "local"
        # Inherited from an ancestor?
        parent = name.split("@")[0]
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if prop in self.ds.get(parent, {}).get("props", {}) and prop not in ("quota", "refquota", "reservation", "refreservation"):
                return self.ds[parent]["props"][prop], "inherited from %s" % parent
        if ":" in prop:
            return "-", "-"
        if prop in ZFS_DEFAULTS:
            v = ZFS_DEFAULTS[prop]
            if parsable and v == "none":
                v = "0"
            return v, "default"
        return None


# Properties holding sizes: stored in bytes, shown like zfs shows them.
ZFS_SIZES = {"quota", "refquota", "reservation", "refreservation", "recordsize"}


def parse_size(v):
    """A zfs size ("10g", "512K", "1.5T", "none", "1048576") in bytes."""
    if v in ("none", "0"):
        return 0
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGTPE]?)B?$", v.strip(), re.IGNORECASE)
    if not m:
        return None
    mult = 1024 ** " KMGTPE".index((m.group(2) or " ").upper())
    return int(float(m.group(1)) * mult)


def human(n):
    """Bytes as zfs prints them (zfs_nicenum: exact multiples as integers,
    otherwise at most 5 characters, K/M/G/T/P/E)."""
    units = " KMGTPE"
    i = 0
    while n >= 1024 ** (i + 1) and i < len(units) - 1:
        i += 1
    if i == 0:
        return "%d" % n
    v = n / 1024**i
    if n % (1024**i) == 0:
        return "%d%s" % (int(v), units[i])
    for precision in (2, 1, 0):
        s = "%.*f%s" % (precision, v, units[i])
        if len(s) <= 5:
            return s
    return "%.0f%s" % (v, units[i])


def getopts(args, spec, long_ok=()):
    """A getopt(3)-style parser: `spec` like "rRfo:"; returns (options as a
    list of (flag, value)), operands). Stops at the first operand."""
    opts = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-" or a in long_ok:
            break
        j = 1
        while j < len(a):
            c = a[j]
            k = spec.find(c)
            if k < 0 or c == ":":
                raise Fail("invalid option '%s'" % c, 2)
            if k + 1 < len(spec) and spec[k + 1] == ":":
                if j + 1 < len(a):
                    opts.append((c, a[j + 1 :]))
                else:
                    i += 1
                    if i >= len(args):
                        raise Fail("missing argument for '%s' option" % c, 2)
                    opts.append((c, args[i]))
                break
            opts.append((c, None))
            j += 1
        i += 1
    return opts, args[i:]


def zfs_main(args):
    """zfs(8): create, clone, snapshot, list, get, set, destroy.

    Datasets live in the pool `zones` only; dataset zones/NAME is the
    directory ROOT/zones/NAME (its mountpoint), a snapshot a full `cp -a`
    copy. Messages are zfs's own. `destroy -r` destroys descendants and
    snapshots but, like zfs, refuses when one of those snapshots has clones
    (`-R` destroys them too); a dataset a running zone lives on is busy.
    """
    if not args:
        raise Fail("usage: zfs command args ...", 2)
    cmd, rest = args[0], args[1:]
    if cmd == "create":
        opts, ops = getopts(rest, "po:")
        if len(ops) != 1:
            raise Fail("usage:\n\tcreate [-p] [-o property=value] ... <filesystem>", 2)
        with Lock():
            Zfs().create(ops[0], [v for f, v in opts if f == "o"], parents=("p", None) in opts)
    elif cmd == "clone":
        opts, ops = getopts(rest, "po:")
        if len(ops) != 2:
            raise Fail("usage:\n\tclone [-p] [-o property=value] ... <snapshot> <filesystem|volume>", 2)
        with Lock():
            Zfs().clone(ops[0], ops[1], [v for f, v in opts if f == "o"], parents=("p", None) in opts)
    elif cmd == "snapshot" or cmd == "snap":
        opts, ops = getopts(rest, "ro:")
        if len(ops) < 1:
            raise Fail("usage:\n\tsnapshot [-r] [-o property=value] ... <filesystem|volume>@<snap> ...", 2)
        with Lock():
            z = Zfs()
            for name in ops:
                z.snapshot(name)
    elif cmd == "destroy":
        opts, ops = getopts(rest, "rRfnpv")
        if len(ops) != 1:
            raise Fail("usage:\n\tdestroy [-fnpRrv] <filesystem|volume>\n\tdestroy [-dnpRrv] <filesystem|volume>@<snap>", 2)
        flags = {f for f, _ in opts}
        with Lock():
            Zfs().destroy(ops[0], recursive="r" in flags, dependents="R" in flags)
    elif cmd == "set":
        if len(rest) < 2:
            raise Fail("usage:\n\tset <property=value> ... <filesystem|volume|snapshot> ...", 2)
        with Lock():
            z = Zfs()
            for name in rest[1:]:
                z.set(rest[0], name)
    elif cmd == "list":
        zfs_list(rest)
    elif cmd == "get":
        zfs_get(rest)
    else:
        raise Fail("unrecognized command '%s'\nthe stand-in supports: create, clone, snapshot, destroy, set, list, get" % cmd, 2)
    return 0


def _types(opt):
    out = set()
    for t in opt.split(","):
        if t == "all":
            out |= {"filesystem", "snapshot", "volume"}
        elif t in ("filesystem", "snapshot", "volume", "snap", "fs"):
            out.add({"snap": "snapshot", "fs": "filesystem"}.get(t, t))
        else:
            raise Fail("invalid type '%s'" % t, 2)
    return out


def _select(z, ops, types, recursive, depth):
    if not ops:
        names = sorted(z.ds, key=lambda d: (d.split("@")[0], "@" in d, d))
        return [n for n in names if z.kind(n) in types]
    out = []
    for name in ops:
        if not z.exists(name):
            raise Fail("cannot open '%s': dataset does not exist" % name)
        found = [name]
        if recursive or depth is not None:
            base = name.count("/")
            for d in sorted(z.ds, key=lambda d: (d.split("@")[0], "@" in d, d)):
                if d.startswith(name + "/") or d.startswith(name + "@"):
                    level = d.split("@")[0].count("/") - base + (1 if "@" in d else 0)
                    if depth is None or level <= depth:
                        found.append(d)
        out += [n for n in found if z.kind(n) in types or (n == name and not recursive and depth is None and "@" in name)]
    return out


def zfs_list(args):
    opts, ops = getopts(args, "Hpro:t:d:s:S:")
    header = ("H", None) not in opts
    parsable = ("p", None) in opts
    fields = ["name", "used", "avail", "refer", "mountpoint"]
    types = None
    depth = None
    for f, v in opts:
        if f == "o":
            fields = v.split(",")
        elif f == "t":
            types = _types(v)
        elif f == "d":
            depth = int(v)
    if types is None:
        types = {"filesystem", "volume"} if not any("@" in o for o in ops) else {"filesystem", "volume", "snapshot"}
    with Lock():
        z = Zfs()
        names = _select(z, ops, types, ("r", None) in opts, depth)
        rows = []
        for n in names:
            row = []
            for f in fields:
                v = z.prop(n, f, parsable)
                if v is None:
                    raise Fail("bad property list: invalid property '%s'" % f, 2)
                row.append(v[0])
            rows.append(row)
    print_table([f.upper() for f in fields], rows, header)
    return 0


def print_table(headers, rows, header):
    if not header:
        for row in rows:
            sys.stdout.write("\t".join(row) + "\n")
        return
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    for row in [headers] + rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def zfs_get(args):
    opts, ops = getopts(args, "Hpro:t:d:s:")
    header = ("H", None) not in opts
    parsable = ("p", None) in opts
    fields = ["name", "property", "value", "source"]
    for f, v in opts:
        if f == "o":
            fields = v.split(",")
            for x in fields:
                if x not in ("name", "property", "value", "received", "source"):
                    raise Fail("invalid column name '%s'" % x, 2)
    if len(ops) < 1:
        raise Fail("missing property argument\nusage:\n\tget [-rHp] [-d max] [-o \"all\" | field[,...]] [-t type[,...]] [-s source[,...]] <\"all\" | property[,...]> [filesystem|volume|snapshot] ...", 2)
    props = ops[0].split(",")
    with Lock():
        z = Zfs()
        names = _select(z, ops[1:], {"filesystem", "snapshot", "volume"}, ("r", None) in opts, None)
        rows = []
        for n in names:
            plist = props
            if props == ["all"]:
                plist = ["type", "creation", "used", "available", "referenced", "mountpoint", "origin"] + sorted(ZFS_DEFAULTS)
            for prop in plist:
                v = z.prop(n, prop, parsable)
                if v is None:
                    raise Fail("bad property list: invalid property '%s'" % prop, 2)
                value, source = v
                cols = {"name": n, "property": prop, "value": value, "received": "-", "source": source}
                rows.append([cols[f] for f in fields])
    print_table([f.upper() for f in fields], rows, header)
    return 0


# --------------------------------------------------------------------------
# imgadm
# --------------------------------------------------------------------------

IMAGE_TYPES = {"zone-dataset", "lx-dataset", "zvol", "docker", "other"}
IMAGE_OSES = {"smartos", "linux", "windows", "bsd", "illumos", "other"}


def img_db():
    return rp("var", "imgadm", "images")


def img_record_path(uuid, zpool=POOL):
    return os.path.join(img_db(), "%s-%s.json" % (zpool, uuid))


def img_get(uuid, zpool=POOL, z=None):
    """imgadm's record of installed image `uuid` ({manifest, zpool}), or
    None: installed means a database entry and the dataset zones/UUID."""
    rec = read_json(img_record_path(uuid, zpool))
    if not rec or not isinstance(rec, dict) or "manifest" not in rec:
        return None
    z = z or Zfs()
    if not z.exists("%s/%s" % (zpool, uuid)):
        return None
    return rec


def img_not_installed(uuid, zpool):
    return Fail('imgadm: error (ImageNotInstalled): image "%s" was not found on zpool "%s"' % (uuid, zpool), 3)


def imgadm_main(args):
    """imgadm(8): get, list, import, delete.

    `get [-P POOL] UUID` prints imgadm's record of the image, as imgadm
    does: {"manifest": {...}, "zpool": "zones", ...}; an image not installed
    (no ROOT/var/imgadm/images/zones-UUID.json, or no dataset zones/UUID) is
    imgadm's ImageNotInstalled error, exit 3. `list [-j] [-H] [-o F,...]
    [FIELD=VALUE ...]`. `import [-P POOL] [-q] UUID` installs from the local
    image source ROOT/imgapi (UUID.json is the manifest, UUID/ the tree that
    becomes the dataset's root/), importing the origin first; an image the
    source lacks is ActiveImageNotFound, exit 1. `delete [-P POOL] UUID`.
    """
    if not args:
        raise Fail("imgadm: error (Usage): no command given", 1)
    cmd, rest = args[0], args[1:]
    if cmd in ("get", "info"):
        opts, ops = getopts(rest, "P:r")
        zpool = dict(opts).get("P") or POOL
        if len(ops) != 1:
            raise Fail('imgadm: error (Usage): incorrect number of args (%d): "%s"' % (len(ops), " ".join(ops)))
        if not is_uuid(ops[0]):
            raise Fail('imgadm: error (Usage): invalid uuid: "%s"' % ops[0])
        with Lock():
            rec = img_get(ops[0], zpool)
        if rec is None:
            raise img_not_installed(ops[0], zpool)
        sys.stdout.write(json.dumps(rec, indent=2) + "\n")
        return 0
    if cmd == "list":
        return imgadm_list(rest)
    if cmd == "import":
        opts, ops = getopts(rest, "P:qS:", long_ok=())
        zpool = dict(opts).get("P") or POOL
        if len(ops) != 1:
            raise Fail('imgadm: error (Usage): incorrect number of args (%d): "%s"' % (len(ops), " ".join(ops)))
        if not is_uuid(ops[0]):
            raise Fail('imgadm: error (Usage): invalid image-id arg: "%s"' % ops[0])
        if zpool != POOL:
            raise Fail('imgadm: error (InternalError): zpool "%s" does not exist' % zpool)
        with Lock():
            imgadm_import(ops[0], quiet=("q", None) in opts)
        return 0
    if cmd in ("delete", "destroy"):
        opts, ops = getopts(rest, "P:")
        zpool = dict(opts).get("P") or POOL
        if len(ops) != 1 or not is_uuid(ops[0]):
            raise Fail("imgadm: error (Usage): delete takes one image UUID")
        with Lock():
            z = Zfs()
            if img_get(ops[0], zpool, z) is None:
                raise img_not_installed(ops[0], zpool)
            ds = "%s/%s" % (zpool, ops[0])
            clones = []
            for snap in [d for d in z.ds if d.startswith(ds + "@")]:
                clones += z.clones_of(snap)
            if clones:
                raise Fail(
                    'imgadm: error (ImageHasDependentClones): image "%s" has dependent clones: %s'
                    % (ops[0], ", ".join(clones))
                )
            z.destroy(ds, recursive=True)
            os.unlink(img_record_path(ops[0], zpool))
        sys.stdout.write("Deleted image %s\n" % ops[0])
        return 0
    raise Fail('imgadm: error (UnknownCommand): unknown command: "%s"' % cmd)


def imgadm_list(args):
    opts, ops = getopts(args, "jHo:s:")
    as_json = ("j", None) in opts
    columns = (dict(opts).get("o") or "uuid,name,version,os,type,pub").split(",")
    filters = {}
    for a in ops:
        if a == "--docker":
            filters["type"] = "docker"
            continue
        if "=" not in a:
            raise Fail('imgadm: error (Usage): invalid filter: "%s" (must be of the form "field=value")' % a)
        k, v = a.split("=", 1)
        filters[k] = v
    with Lock():
        z = Zfs()
        recs = []
        if os.path.isdir(img_db()):
            for f in sorted(os.listdir(img_db())):
                m = re.match(r"^([^-]+)-(.+)\.json$", f)
                if not m:
                    continue
                rec = img_get(m.group(2), m.group(1), z)
                if rec is not None:
                    recs.append(rec)

    def field(rec, k):
        man = rec["manifest"]
        if k == "pub":
            return (man.get("published_at") or "")[:10]
        if k == "source":
            return rec.get("source", "")
        v = man.get(k)
        if isinstance(v, bool):
            return "true" if v else "false"
        return "" if v is None else str(v)

    recs = [r for r in recs if all(field(r, k) == v for k, v in filters.items())]
    recs.sort(key=lambda r: (r["manifest"].get("published_at") or "", r["manifest"].get("name") or ""))
    if as_json:
        sys.stdout.write(json.dumps(recs, indent=2) + "\n")
        return 0
    print_table([c.upper() for c in columns], [[field(r, c) for c in columns] for r in recs], ("H", None) not in opts)
    return 0


def validate_manifest(man, uuid):
    if not isinstance(man, dict):
        raise Fail("imgadm: error (ManifestValidation): manifest of image %s is not an object" % uuid)
    problems = []
    if man.get("uuid") != uuid:
        problems.append('"uuid" must be "%s"' % uuid)
    for k in ("name", "version"):
        if not isinstance(man.get(k), str) or not man.get(k):
            problems.append('"%s" is missing' % k)
    if man.get("type") not in IMAGE_TYPES:
        problems.append('"type" must be one of %s' % sorted(IMAGE_TYPES))
    if man.get("os") not in IMAGE_OSES:
        problems.append('"os" must be one of %s' % sorted(IMAGE_OSES))
    if "origin" in man and not is_uuid(man["origin"]):
        problems.append('"origin" must be a UUID')
    if problems:
        raise Fail("imgadm: error (ManifestValidation): invalid manifest for image %s: %s" % (uuid, "; ".join(problems)))


def imgadm_import(uuid, quiet=False, chain=()):
    z = Zfs()
    rec = img_get(uuid, POOL, z)
    if rec is not None:
        if not chain:
            man = rec["manifest"]
            sys.stdout.write("Image %s (%s %s) is already installed, skipping\n" % (uuid, man.get("name"), man.get("version")))
        return
    src_manifest = rp("imgapi", uuid + ".json")
    man = read_json(src_manifest)
    if man is None or man.get("state", "active") != "active" or man.get("disabled") is True:
        if chain:
            raise Fail(
                'imgadm: error (OriginNotFoundInSource): origin image "%s" for image "%s" was not found in image sources'
                % (uuid, chain[-1])
            )
        raise Fail('imgadm: error (ActiveImageNotFound): an active image "%s" was not found in image sources' % uuid)
    validate_manifest(man, uuid)
    tree = rp("imgapi", uuid)
    if not os.path.isdir(tree):
        raise Fail("imgadm: error (DownloadError): image %s has no file in its source (%s is missing)" % (uuid, tree))
    if man.get("origin"):
        if man["origin"] in chain or man["origin"] == uuid:
            raise Fail("imgadm: error (InternalError): origin loop at image %s" % uuid)
        imgadm_import(man["origin"], quiet, chain + (uuid,))
    name = "%s@%s" % (man.get("name"), man.get("version"))
    source = "file://" + rp("imgapi")
    if not quiet:
        sys.stdout.write('Importing %s (%s) from "%s"\n' % (uuid, name, source))
    ds = "%s/%s" % (POOL, uuid)
    if z.exists(ds):
        # Left half made by an earlier import: imgadm destroys it too.
        z.destroy(ds, recursive=True)
    try:
        if man.get("origin"):
            z.clone("%s/%s@final" % (POOL, man["origin"]), ds, [])
        else:
            z.create(ds, [])
        root = os.path.join(z.mountpoint(ds), "root")
        os.makedirs(root, exist_ok=True)
        r = subprocess.run(["cp", "-a", tree + "/.", root + "/"], stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise OSError(r.stderr.decode(errors="replace"))
        write_json(img_record_path(uuid), {"manifest": man, "zpool": POOL, "source": source})
        z.snapshot(ds + "@final")
    except Exception:
        if z.exists(ds):
            z.destroy(ds, recursive=True, dependents=True)
        try:
            os.unlink(img_record_path(uuid))
        except FileNotFoundError:
            pass
        raise
    if not quiet:
        sys.stdout.write("Imported image %s (%s)\n" % (uuid, name))


# --------------------------------------------------------------------------
# sysinfo
# --------------------------------------------------------------------------


def sysinfo_data():
    data = read_json(rp("sysinfo.json"))
    if data is None:
        raise Fail("sysinfo: %s is missing (the fixture writes it)" % rp("sysinfo.json"))
    return data


def sysinfo_main(args):
    """sysinfo(8): prints ROOT/sysinfo.json; -p prints KEY='VALUE' lines
    (spaces in keys as underscores, objects left out), -u prints nothing,
    -f is the default."""
    opts, ops = getopts(args, "fpu?")
    flags = {f for f, _ in opts}
    if "?" in flags or ops:
        raise Fail("Usage: sysinfo [-f|-p|-u]", 0 if "?" in flags else 2)
    data = sysinfo_data()
    if "u" in flags:
        return 0
    if "p" in flags:
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            sys.stdout.write("%s='%s'\n" % (k.replace(" ", "_"), v))
        return 0
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    return 0


# --------------------------------------------------------------------------
# vmadm: the property table (src/vm/node_modules/proptable.js)
# --------------------------------------------------------------------------

LX = "lx"
JM = "joyent-minimal"
BRANDS = (LX, JM)
C, U, A = "create", "update", "add"


def _p(kind, actions, brands=BRANDS, **kw):
    d = {"type": kind, "actions": set(actions), "brands": set(brands)}
    d.update(kw)
    return d


def _valid_ip(s):
    if not isinstance(s, str):
        return False
    if re.match(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$", s):
        return all(int(x) <= 255 for x in s.split("."))
    return ":" in s and bool(re.match(r"^[0-9a-fA-F:.]+$", s))


def _valid_mac(s):
    return isinstance(s, str) and bool(re.match(r"^([0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2}$", s))


PROPS = {
    "add_filesystems": _p("object-array", [U], check_as="filesystems"),
    "add_nics": _p("object-array", [U], check_as="nics"),
    "alias": _p("string", [C, U]),
    "archive_on_delete": _p("boolean", [C, U]),
    "autoboot": _p("boolean", [C, U]),
    "billing_id": _p("string", [C, U]),
    "brand": _p("string", [C], required=True),
    "cpu_cap": _p("integer", [C, U], min=0),
    "cpu_shares": _p("integer", [C, U], min=0),
    "customer_metadata": _p("flat-object", [C]),
    "dataset_uuid": _p("uuid", [C]),
    "delegate_dataset": _p("boolean", [C]),
    "do_not_inventory": _p("boolean", [C, U]),
    "docker": _p("boolean", [C, U]),
    "dns_domain": _p("string", [C, U]),
    "filesystems": _p("object-array", [C]),
    "filesystems.*.options": _p("list", [A]),
    "filesystems.*.raw": _p("string", [A]),
    "filesystems.*.source": _p("string", [A]),
    "filesystems.*.target": _p("string", [A]),
    "filesystems.*.type": _p("string", [A]),
    "firewall_enabled": _p("boolean", [C, U]),
    "fs_allowed": _p("list", [C, U]),
    "hostname": _p("string", [C, U]),
    "image_uuid": _p("uuid", [C], required=True),
    "indestructible_delegated": _p("boolean", [C, U]),
    "indestructible_zoneroot": _p("boolean", [C, U]),
    "init_name": _p("string", [C, U]),
    "internal_metadata": _p("flat-object", [C]),
    "internal_metadata_namespaces": _p("list", [C, U]),
    "kernel_version": _p("string", [C, U], brands=(LX,), required=True),
    "limit_priv": _p("list", [C, U]),
    "maintain_resolvers": _p("boolean", [C, U]),
    "max_locked_memory": _p("integer", [C, U], min=0),
    "max_lwps": _p("integer", [C, U], min=0),
    "max_msg_ids": _p("integer", [C, U], min=0),
    "max_physical_memory": _p("integer", [C, U], min=0),
    "max_sem_ids": _p("integer", [C, U], min=0),
    "max_shm_ids": _p("integer", [C, U], min=0),
    "max_shm_memory": _p("integer", [C, U], min=0),
    "max_swap": _p("integer", [C, U], min=256),
    "mdata_exec_timeout": _p("integer", [C], min=0),
    "nics": _p("object-array", [C]),
    "nics.*.allow_dhcp_spoofing": _p("boolean", [A, U]),
    "nics.*.allow_ip_spoofing": _p("boolean", [A, U]),
    "nics.*.allow_mac_spoofing": _p("boolean", [A, U]),
    "nics.*.allow_restricted_traffic": _p("boolean", [A, U]),
    "nics.*.allowed_ips": _p("list", [A, U]),
    "nics.*.blocked_outgoing_ports": _p("list", [A, U]),
    "nics.*.dhcp_server": _p("boolean", [A, U]),
    "nics.*.gateway": _p("string", [A, U]),
    "nics.*.gateways": _p("list", [A, U]),
    "nics.*.interface": _p("string", [A, U]),
    "nics.*.ip": _p("string", [A, U]),
    "nics.*.ips": _p("list", [A, U]),
    "nics.*.mac": _p("string", [A, U], validator=_valid_mac),
    "nics.*.mtu": _p("integer", [A, U], min=576, max=9000),
    "nics.*.netmask": _p("string", [A, U]),
    "nics.*.network_uuid": _p("uuid", [A, U]),
    "nics.*.nic_tag": _p("string", [A, U]),
    "nics.*.primary": _p("boolean", [A, U]),
    "nics.*.vlan_id": _p("integer", [A, U], min=0, max=4095),
    "nics.*.vrrp_primary_ip": _p("string", [A, U]),
    "nics.*.vrrp_vrid": _p("integer", [A, U], min=0, max=255),
    "nowait": _p("boolean", [C]),
    "owner_uuid": _p("string", [C, U]),
    "package_name": _p("string", [C, U]),
    "package_version": _p("string", [C, U]),
    "quota": _p("integer", [C, U], min=0),
    "ram": _p("integer", [C, U], min=0),
    "remove_customer_metadata": _p("list", [U]),
    "remove_filesystems": _p("list", [U]),
    "remove_internal_metadata": _p("list", [U]),
    "remove_nics": _p("list", [U]),
    "remove_routes": _p("list", [U]),
    "remove_tags": _p("list", [U]),
    "resolvers": _p("list", [C, U], validator=_valid_ip),
    "restart_init": _p("boolean", [C, U]),
    "routes": _p("flat-object", [C]),
    "set_customer_metadata": _p("flat-object", [U]),
    "set_internal_metadata": _p("flat-object", [U]),
    "set_routes": _p("flat-object", [U]),
    "set_tags": _p("flat-object", [U]),
    "tags": _p("flat-object", [C]),
    "tmpfs": _p("integer", [C, U], min=0),
    "update_filesystems": _p("object-array", [U], check_as="filesystems"),
    "update_nics": _p("object-array", [U], check_as="nics"),
    "uuid": _p("uuid", [C]),
    "zfs_data_compression": _p("string", [C, U]),
    "zfs_data_recsize": _p("integer", [C, U], min=0),
    "zfs_filesystem_limit": _p("integer", [C, U], min=0),
    "zfs_io_priority": _p("integer", [C, U], min=0),
    "zfs_root_compression": _p("string", [C, U]),
    "zfs_root_recsize": _p("integer", [C, U], min=0),
    "zfs_snapshot_limit": _p("integer", [C, U], min=0),
    "zfs_storage_pool_name": _p("zpool", [C]),
    "zlog_max_size": _p("integer", [C, U], min=0, max=9223372036854775807),
    "zonename": _p("string", [C]),
    "zpool": _p("zpool", [C]),
}

EXPECTED = {
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "uuid": "a UUID",
    "zpool": 'the name of a zpool ("zones")',
    "flat-object": "an object whose values are strings, numbers or booleans",
    "list": "an array of strings or numbers, or a comma-separated string",
    "object-array": "an array of objects",
}

# Brands' image types (brand_options in proptable.js).
ZONEROOT_IMAGE_TYPES = {LX: ["docker", "lx-dataset"], JM: ["zone-dataset"]}
DOCKERINIT = {LX: "/native/usr/vm/sbin/dockerinit", JM: "/usr/vm/sbin/dockerinit"}


def to_bool(v):
    if v is True or v == "true" or v == 1 or v == "1":
        return True
    if v is False or v == "false" or v == 0 or v == "0":
        return False
    return None


def check_value(prop, value, errors, shown=None):
    """vmadm's type check of one payload property (validateProperty);
    `shown` is the name to report (nics.0.vlan_id for nics.*.vlan_id)."""
    shown = shown or prop
    spec = PROPS[prop]
    kind = spec["type"]
    bad = False
    if kind == "uuid":
        bad = not is_uuid(value)
    elif kind == "boolean":
        bad = to_bool(value) is None
    elif kind == "string":
        if value is None or (isinstance(value, str) and value.strip() == ""):
            bad = False
        elif not isinstance(value, str):
            bad = True
        elif spec.get("validator") and not spec["validator"](value):
            bad = True
    elif kind == "integer":
        if value is None or (isinstance(value, str) and value.strip() == ""):
            bad = False
        elif isinstance(value, bool):
            bad = True
        else:
            try:
                n = float(value) if not isinstance(value, (int, float)) else value
            except ValueError:
                n = float("nan")
            if n != n or int(n) != n:
                bad = True
            elif "min" in spec and n < spec["min"]:
                bad = True
            elif "max" in spec and n > spec["max"]:
                bad = True
    elif kind == "zpool":
        bad = value != POOL
    elif kind == "flat-object":
        bad = not isinstance(value, dict) or any(
            not isinstance(v, (str, int, float, bool)) for v in value.values()
        )
    elif kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list):
            for it in items:
                if isinstance(it, bool) or not isinstance(it, (str, int, float)):
                    bad = True
                elif spec.get("validator") and not spec["validator"](it):
                    bad = True
                elif "," in str(it) and not isinstance(value, str):
                    bad = True
        else:
            bad = True
    elif kind == "object-array":
        bad = not isinstance(value, list) or any(not isinstance(x, dict) for x in value)
    if bad and shown not in errors["bad_values"]:
        errors["bad_values"].append(shown)
        errors["detail"][shown] = "expected " + EXPECTED[kind]


def validate_payload(brand, action, payload):
    """VM.validate: bad properties, bad values, missing properties."""
    errors = {"bad_properties": [], "bad_values": [], "missing_properties": [], "detail": {}}

    def one(prop, value, act, shown):
        spec = PROPS.get(prop)
        if spec is None or brand not in spec["brands"] or act not in spec["actions"]:
            if shown not in errors["bad_properties"]:
                errors["bad_properties"].append(shown)
            return
        check_value(prop, value, errors, shown)

    for prop, value in payload.items():
        one(prop, value, action, prop)
        spec = PROPS.get(prop)
        if spec and spec["type"] == "object-array" and isinstance(value, list):
            base = spec.get("check_as", prop)
            sub_action = "update" if prop.startswith("update_") else "add"
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                for sub, subval in item.items():
                    one("%s.*.%s" % (base, sub), subval, sub_action, "%s.%d.%s" % (prop, i, sub))
    if action == "create":
        for prop, spec in PROPS.items():
            if spec.get("required") and brand in spec["brands"] and prop not in payload:
                errors["missing_properties"].append(prop)
    return errors


def raise_validation(errors, action, brand):
    if errors["bad_values"]:
        detail = "; ".join("%s: %s" % (p, errors["detail"][p]) for p in errors["bad_values"] if errors["detail"].get(p))
        raise Fail(
            "Invalid value(s) for: %s%s" % (",".join(errors["bad_values"]), " (%s)" % detail if detail else "")
        )
    if errors["missing_properties"]:
        raise Fail("Missing required properties: " + ",".join(errors["missing_properties"]))
    if errors["bad_properties"]:
        raise Fail(
            "Invalid %s property: [%s] for brand %s (vmadm would warn and drop %s; the stand-in refuses the payload)"
            % (
                action,
                ",".join(errors["bad_properties"]),
                brand,
                "it" if len(errors["bad_properties"]) == 1 else "them",
            )
        )


def normalize(prop, value):
    """A valid payload value as the VM object stores it."""
    spec = PROPS.get(prop)
    if spec is None:
        return value
    kind = spec["type"]
    if kind == "boolean":
        return to_bool(value)
    if kind == "integer":
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return int(float(value))
    if kind == "list":
        if isinstance(value, str):
            return [x for x in value.split(",") if x]
        return list(value)
    if kind == "object-array":
        base = spec.get("check_as", prop)
        out = []
        for item in value:
            out.append({k: normalize("%s.*.%s" % (base, k), v) for k, v in item.items()})
        return out
    return value


# --------------------------------------------------------------------------
# vmadm: VM objects and run state
# --------------------------------------------------------------------------


def vm_path(uuid):
    return rp(".vmadm", uuid + ".json")


def run_path(uuid):
    return rp(".vmadm", uuid + ".run.json")


def load_vm(uuid):
    if not is_uuid(uuid):
        return None
    return read_json(vm_path(uuid))


def save_vm(vm):
    vm["last_modified"] = iso_ms()
    write_json(vm_path(vm["uuid"]), vm)


def load_run(uuid):
    return read_json(
        run_path(uuid),
        {"run": 0, "started_run": 0, "exited_run": 0, "supervisor": None, "init_pid": None, "a_pid": None},
    )


def save_run(uuid, run):
    write_json(run_path(uuid), run)


def all_vms():
    d = rp(".vmadm")
    out = []
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            if f.endswith(".json") and not f.endswith(".run.json") and is_uuid(f[:-5]):
                vm = read_json(os.path.join(d, f))
                if vm:
                    out.append(vm)
    return out


def not_found(uuid):
    return "VM %s not found" % uuid


def meta(vm, key):
    return (vm.get("internal_metadata") or {}).get(key)


def meta_true(vm, key):
    return to_bool(meta(vm, key)) is True


def is_docker(vm):
    return vm.get("docker") is True


def init_is_live(vm, run):
    """Whether the VM's init (run["init_pid"]) is alive and is ours."""
    pid = run.get("init_pid")
    if not pid or not alive(pid):
        return False
    return run.get("a_pid") is None or proc_ppid(pid) == run.get("a_pid")


# --------------------------------------------------------------------------
# vmadm: commands
# --------------------------------------------------------------------------

LIST_FIELDS = {
    "alias": ("ALIAS", 10),
    "autoboot": ("AUTOBOOT", 8),
    "billing_id": ("BILLING_ID", 36),
    "boot_timestamp": ("BOOT_TIMESTAMP", 24),
    "brand": ("BRAND", 14),
    "cpu_cap": ("CPU_CAP", 7),
    "cpu_shares": ("CPU_SHARE", 9),
    "cpu_type": ("CPU_TYPE", 8),
    "create_timestamp": ("CREATE_TIMESTAMP", 24),
    "dns_domain": ("DOMAIN", 32),
    "do_not_inventory": ("DNI", 5),
    "docker": ("DOCKER", 6),
    "exit_status": ("EXIT", 4),
    "exit_timestamp": ("EXIT_TIMESTAMP", 24),
    "firewall_enabled": ("FIREWALL_ENABLED", 16),
    "flexible_disk_size": ("FLEX_DISK_SIZE", 14),
    "free_space": ("FREE_SPACE", 14),
    "hostname": ("HOSTNAME", 32),
    "hvm": ("HVM", 5),
    "image_uuid": ("IMAGE_UUID", 36),
    "indestructible_delegated": ("INDESTR_DATA", 12),
    "indestructible_zoneroot": ("INDESTR_ROOT", 12),
    "ram": ("RAM", 7),
    "max_locked_memory": ("MAX_LOCKED", 10),
    "max_lwps": ("MAX_LWP", 7),
    "max_physical_memory": ("MAX_PHYS", 8),
    "max_swap": ("MAX_SWAP", 8),
    "owner_uuid": ("OWNER_UUID", 36),
    "package_name": ("PACKAGE_NAME", 32),
    "package_version": ("PACKAGE_VER", 11),
    "pid": ("PID", 6),
    "qemu_extra_opts": ("QEMU_EXTRA_OPTS", 15),
    "quota": ("QUOTA", 5),
    "zone_state": ("ZONE_STATE", 10),
    "state": ("STATE", 16),
    "tmpfs": ("TMPFS", 5),
    "type": ("TYPE", 4),
    "uuid": ("UUID", 36),
    "vcpus": ("VCPUS", 5),
    "zfs_io_priority": ("IO_PRIORITY", 11),
    "zpool": ("ZPOOL", 12),
    "zonename": ("ZONENAME", 12),
    "zonepath": ("ZONEPATH", 40),
    "zoneid": ("ZONEID", 6),
}
HASH_KEYS = ("tags", "customer_metadata", "internal_metadata", "routes")
ARRAY_HASH_KEYS = ("nics", "disks", "filesystems")


def with_fake_fields(vm):
    """vmadm's addFakeFields: `type` and, for OS VMs, `ram`."""
    vm = dict(vm)
    vm["type"] = "LX" if vm.get("brand") == LX else "OS"
    vm["ram"] = vm.get("max_physical_memory")
    return vm


def flatten(vm, key):
    """VM.flatten: a value by dotted key; a list of values for `.*.`."""
    parts = key.split(".")
    if parts[0] in HASH_KEYS and len(parts) > 1:
        obj = vm.get(parts[0])
        if not isinstance(obj, dict):
            return None
        return obj.get(".".join(parts[1:]))
    if parts[0] in ARRAY_HASH_KEYS and len(parts) == 3:
        arr = vm.get(parts[0])
        if not isinstance(arr, list):
            return None
        if parts[1] == "*":
            return [x.get(parts[2]) for x in arr if isinstance(x, dict)]
        try:
            item = arr[int(parts[1])]
        except (ValueError, IndexError):
            return None
        return item.get(parts[2]) if isinstance(item, dict) else None
    if len(parts) > 1:
        return None
    return vm.get(key)


def as_text(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, dict)):
        if isinstance(v, list) and all(not isinstance(x, (list, dict)) for x in v):
            return ",".join(as_text(x) or "" for x in v)
        return json.dumps(v)
    return str(v)


def matches(vm, filters):
    for key, want in filters:
        regex = want.startswith("~")
        got = flatten(vm, key)
        values = got if (isinstance(got, list) and ".*." in key) else [got]
        ok = False
        for v in values:
            t = as_text(v)
            if t is None:
                continue
            if regex:
                if re.search(want[1:], t):
                    ok = True
            elif t == want:
                ok = True
        if not ok:
            return False
    return True


def valid_filter_key(key):
    if key in LIST_FIELDS:
        return True
    if re.match(r"^disks\.[*0-9]*\.(boot|image_name|image_size|image_uuid|size|media|model|zpool)$", key):
        return True
    if re.match(r"^nics\.[*0-9]*\.(dhcp_server|gateway|interface|ip|mac|model|netmask|nic_tag|vlan_id)$", key):
        return True
    if re.match(r"^(tags|customer_metadata|internal_metadata)\..*", key):
        return True
    return False


def list_props(field):
    if field in LIST_FIELDS:
        return LIST_FIELDS[field]
    parts = field.split(".")
    if len(parts) == 3 and parts[0] in ARRAY_HASH_KEYS:
        return (field.upper(), 20)
    if len(parts) == 2 and parts[0] in HASH_KEYS:
        return (field.upper(), 20)
    return None


def parse_filters(args, what):
    out = []
    for a in args:
        if "=" not in a:
            raise Fail("Bad arguments: unable to split %s" % a, 2)
        k, v = a.split("=", 1)
        if not valid_filter_key(k):
            raise Fail('Invalid %s key: "%s"' % (what, k))
        out.append((k, v))
    return out


def vmadm_usage(message):
    lines = [message] if message else []
    lines += [
        "Usage: vmadm <command> [options]",
        "",
        "create [-f <filename>]",
        "delete <uuid>",
        "get <uuid>",
        "kill [-s SIGNAL|-SIGNAL] <uuid>",
        "list [-p] [-H] [-o field,...] [-s field,...] [field=value ...]",
        "lookup [-j|-1] [-o field,...] [field=value ...]",
        "reboot <uuid> [-F]",
        "start <uuid>",
        "stop <uuid> [-F] [-t timeout]",
        "update <uuid> [-f <filename>]",
        " -or- update <uuid> property=value [property=value ...]",
        "validate create [-f <filename>]",
        "validate update <brand> [-f <filename>]",
    ]
    return Fail("\n".join(lines), 2)


def take_uuid(cmd, rest):
    """vmadm's getUUID: the first operand, shaped like a UUID."""
    ops = [a for a in rest if not a.startswith("-")]
    if ops and len(ops[0]) == 36 and ops[0][8] == "-" and ops[0][13] == "-" and ops[0][18] == "-" and ops[0][23] == "-":
        return ops[0]
    raise vmadm_usage("Invalid or missing UUID for %s" % cmd)


def vmadm_main(args):
    """vmadm(8) for `lx` and `joyent-minimal` VMs: create, get, lookup,
    list, update, start, stop, kill, reboot, delete, validate.

    Messages, output formats and exit codes follow vmadm.js/VM.js. Where the
    stand-in is stricter than vmadm: a property vmadm would warn about and
    drop from a payload is refused (exit 1), and only the brands `lx` and
    `joyent-minimal` exist. See vmadm_create, vmadm_start and supervise for
    how zones run.
    """
    if not args:
        raise vmadm_usage(None)
    cmd, rest = args[0], args[1:]
    handlers = {
        "create": vmadm_create,
        "get": vmadm_get,
        "json": vmadm_get,
        "lookup": vmadm_lookup,
        "list": vmadm_list,
        "update": vmadm_update,
        "start": vmadm_start,
        "boot": vmadm_start,
        "stop": vmadm_stop,
        "halt": vmadm_stop,
        "kill": vmadm_kill,
        "reboot": vmadm_reboot,
        "delete": vmadm_delete,
        "destroy": vmadm_delete,
        "validate": vmadm_validate,
    }
    if cmd in ("-h", "help"):
        raise Fail(vmadm_usage(None).message, 0)
    if cmd not in handlers:
        raise vmadm_usage('Invalid command: "%s".' % cmd)
    return handlers[cmd](rest)


def read_payload(rest):
    """A JSON payload from -f FILE or standard input."""
    filename = None
    i = 0
    while i < len(rest):
        if rest[i] in ("-f", "--file"):
            if i + 1 >= len(rest):
                raise vmadm_usage("-f needs a file name")
            filename = rest[i + 1]
            i += 2
            continue
        i += 1
    if filename and filename != "-":
        try:
            with open(filename, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            raise Fail("File: %s does not exist." % filename)
    else:
        if sys.stdin.isatty():
            raise vmadm_usage("Will not create from stdin when stdin is a tty.")
        text = read_stdin_payload()
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise Fail("Invalid JSON payload: %s" % e)
    if not isinstance(payload, dict):
        raise Fail("Invalid JSON payload: not an object")
    return payload


def injected_create_failure():
    """ROOT/.fail/vmadm-create: when present, `vmadm create` fails with its
    text. When its first line is `N` or `N failed` (N a number), N more
    creates fail (this one included; the file goes when N reaches 0) and the
    rest is the message; with `failed`, the VM is left behind in state
    "failed", as a provision cut short leaves it. Any other first line: the
    whole file is the message and every create fails until it is removed.
    Returns (message, leave_failed) or None."""
    path = rp(".fail", "vmadm-create")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    first, _, rest = text.partition("\n")
    m = re.match(r"^\s*(\d+)\s*(failed)?\s*$", first)
    if not m:
        return (text.strip() or "vmadm create failed (injected)", False)
    n = int(m.group(1))
    if n <= 0:
        os.unlink(path)
        return None
    if n - 1 <= 0:
        os.unlink(path)
    else:
        with open(path, "w") as f:
            f.write("%d%s\n%s" % (n - 1, " failed" if m.group(2) else "", rest))
    return (rest.strip() or "vmadm create failed (injected)", bool(m.group(2)))


def nic_tags():
    info = read_json(rp("sysinfo.json"), {}) or {}
    tags = set()
    for key in ("Network Interfaces", "Virtual Network Interfaces"):
        for nic in (info.get(key) or {}).values():
            if isinstance(nic, dict):
                tags |= set(nic.get("NIC Names") or [])
                if nic.get("Host Interface"):
                    tags.add(nic.get("Host Interface"))
    return tags


def vmadm_create(rest):
    """`vmadm create [-f FILE]`: the payload (stdin or FILE) is validated
    against vmadm's property table for its brand; the image must be
    installed (`imgadm get` would find it, its type fits the brand, and
    zones/IMAGE@final exists); then zones/UUID is cloned from it and the VM
    object written, `stopped`/`installed`. With autoboot true (vmadm's
    default when the payload does not say) the VM is started as vmadm does.
    Failure injection: see injected_create_failure."""
    payload = read_payload(rest)
    if "uuid" in payload and is_uuid(payload["uuid"]) and load_vm(payload["uuid"]) is not None:
        raise Fail("VM with UUID %s already exists" % payload["uuid"])
    if "brand" not in payload:
        raise Fail(
            "Missing required properties: brand (vmadm would default to brand 'joyent', "
            "which the stand-in does not run: use 'lx' or 'joyent-minimal')"
        )
    brand = payload["brand"]
    if brand not in BRANDS:
        if brand in ("joyent", "kvm", "bhyve", "builder"):
            raise Fail("Unsupported brand: %s (the stand-in runs only lx and joyent-minimal VMs)" % brand)
        raise Fail("Unsupported brand: %s" % brand)
    errors = validate_payload(brand, "create", payload)
    # The image: imgadm's record, its type, its @final snapshot.
    image = payload.get("image_uuid")
    image_problem = None
    if is_uuid(image):
        with Lock():
            rec = img_get(image, payload.get("zpool", POOL))
        if rec is None:
            image_problem = "image %s is not installed on zpool %s" % (image, POOL)
        elif rec["manifest"].get("type") not in ZONEROOT_IMAGE_TYPES[brand]:
            image_problem = "image %s is type %s, but must be one of: %s" % (
                image,
                rec["manifest"].get("type"),
                json.dumps(ZONEROOT_IMAGE_TYPES[brand]),
            )
        if image_problem and "image_uuid" not in errors["bad_values"]:
            errors["bad_values"].append("image_uuid")
            errors["detail"]["image_uuid"] = image_problem
    raise_validation(errors, "create", brand)
    payload = {k: normalize(k, v) for k, v in payload.items()}
    payload = {k: v for k, v in payload.items() if v is not None or k in ("alias",)}

    # checkPayloadProperties: nics and memory.
    nics = payload.get("nics") or []
    primaries = [n for n in nics if n.get("primary")]
    if len(primaries) > 1:
        raise Fail("Cannot have multiple primary nics")
    known = nic_tags()
    for n in nics:
        tag = n.get("nic_tag")
        if tag is not None and "/" not in tag and tag not in known:
            raise Fail('Invalid nic tag "%s"' % tag)
    mpm = payload.get("max_physical_memory", payload.get("ram", 256))
    if "max_locked_memory" in payload and payload["max_locked_memory"] > mpm:
        raise Fail("Invalid value(s) for: max_locked_memory (must be <= max_physical_memory)")
    if "max_swap" in payload and payload["max_swap"] < mpm:
        raise Fail("Invalid value(s) for: max_swap (must be >= max_physical_memory)")

    uuid = payload.get("uuid") or str(uuidlib.uuid4())
    with Lock():
        if load_vm(uuid) is not None:
            raise Fail("VM with UUID %s already exists" % uuid)
        injected = injected_create_failure()
        z = Zfs()
        ds = "%s/%s" % (POOL, uuid)
        snap = "%s/%s@final" % (POOL, image)
        if not z.exists(snap):
            raise Fail("cannot open '%s': dataset does not exist" % snap)
        if injected and not injected[1]:
            raise Fail(injected[0])
        if z.exists(ds):
            raise Fail("cannot create '%s': dataset already exists" % ds)
        z.clone(snap, ds, [])
        vm = build_vm(uuid, brand, payload, z)
        os.makedirs(os.path.join(vm["zonepath"], "logs"), mode=0o700, exist_ok=True)
        if injected:
            vm["state"] = "failed"
            vm["failed"] = True
            vm["autoboot"] = False
            save_vm(vm)
            save_run(uuid, load_run(uuid))
            raise Fail(injected[0])
        autoboot = vm["autoboot"]
        if autoboot:
            vm["state"] = "provisioning"
        save_vm(vm)
        save_run(uuid, load_run(uuid))
    if autoboot:
        start_vm(uuid, provisioning=True)
    stderr("Successfully created VM %s" % uuid)
    return 0


def build_vm(uuid, brand, payload, z):
    """The VM object of a new VM: the payload with vmadm's defaults
    (applyZoneDefaults, fixPayloadMemory) and the fields vmadm loads."""
    info = read_json(rp("sysinfo.json"), {}) or {}
    vm = {}
    for k, v in payload.items():
        if k in ("nowait", "mdata_exec_timeout", "dataset_uuid", "zfs_storage_pool_name", "delegate_dataset"):
            continue
        vm[k] = v
    vm["uuid"] = uuid
    vm["brand"] = brand
    vm.setdefault("owner_uuid", "00000000-0000-0000-0000-000000000000")
    vm.setdefault("billing_id", "00000000-0000-0000-0000-000000000000")
    vm.setdefault("autoboot", True)
    vm["zpool"] = POOL
    vm.setdefault("dns_domain", "local")
    vm["cpu_shares"] = min(vm.get("cpu_shares", 100), 65535)
    vm.setdefault("zfs_io_priority", 100)
    vm.setdefault("max_lwps", 2000)
    ram = vm.pop("ram", 256)
    vm.setdefault("max_physical_memory", ram)
    mpm = vm["max_physical_memory"]
    vm.setdefault("max_locked_memory", mpm)
    vm.setdefault("max_swap", max(mpm, 256))
    if "tmpfs" not in vm or vm["tmpfs"] > mpm:
        vm["tmpfs"] = mpm
    vm.setdefault("limit_priv", ["default"])
    vm.setdefault("quota", 10)
    vm.setdefault("customer_metadata", {})
    vm.setdefault("internal_metadata", {})
    vm.setdefault("tags", {})
    vm.setdefault("routes", {})
    vm.setdefault("resolvers", [])
    vm.setdefault("zonename", uuid)
    interface_prefix = "eth" if brand == LX else "net"
    nics = vm.get("nics") or []
    for i, n in enumerate(nics):
        n.setdefault("interface", "%s%d" % (interface_prefix, i))
        n.setdefault("mac", "90:b8:d0:%02x:%02x:%02x" % tuple(os.urandom(3)))
        if n.get("ip") and "ips" not in n:
            n["ips"] = [n["ip"] if n["ip"] in ("dhcp", "addrconf") else n["ip"] + "/" + str(netmask_bits(n.get("netmask")))]
        if n.get("gateway") and "gateways" not in n:
            n["gateways"] = [n["gateway"]]
    if nics and not any(n.get("primary") for n in nics):
        nics[0]["primary"] = True
    vm["nics"] = nics
    vm.setdefault("filesystems", [])
    if vm.get("docker"):
        im = vm["internal_metadata"]
        ns = vm.setdefault("internal_metadata_namespaces", [])
        if "docker" not in ns:
            ns.append("docker")
        if vm.get("restart_init") is not False:
            vm["restart_init"] = False
        vm.setdefault("init_name", DOCKERINIT[brand])
        if "docker:id" not in im:
            im["docker:id"] = (uuid + str(uuidlib.uuid4())).replace("-", "")
        vm["zlog_mode"] = "gt-" if meta_true(vm, "docker:tty") else "g--"
    vm["create_timestamp"] = iso_ms()
    vm["zonepath"] = z.mountpoint("%s/%s" % (POOL, uuid))
    vm["zfs_filesystem"] = "%s/%s" % (POOL, uuid)
    vm["zonedid"] = (int(uuid.replace("-", "")[:6], 16) % 65000) + 1
    vm["state"] = "stopped"
    vm["zone_state"] = "installed"
    vm["server_uuid"] = info.get("UUID")
    if info.get("Datacenter Name"):
        vm["datacenter_name"] = info.get("Datacenter Name")
    vm["platform_buildstamp"] = info.get("Live Image")
    vm["v"] = 1
    if not vm.get("firewall_enabled"):
        vm.pop("firewall_enabled", None)
    return vm


def netmask_bits(mask):
    try:
        return sum(bin(int(x)).count("1") for x in (mask or "255.255.255.0").split("."))
    except ValueError:
        return 24


def vmadm_get(rest):
    uuid = take_uuid("get", rest)
    vm = load_vm(uuid)
    if vm is None:
        raise Fail("zoneadm: %s: No such zone configured" % uuid)
    sys.stdout.write(json.dumps(vm, indent=2, sort_keys=True) + "\n")
    return 0


def vmadm_lookup(rest):
    as_json = False
    unique = False
    fields = None
    filters = []
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-j", "--json"):
            as_json = True
        elif a in ("-1", "--unique"):
            unique = True
        elif a in ("-o", "--output"):
            i += 1
            if i >= len(rest):
                raise vmadm_usage("-o needs a list of fields")
            fields = rest[i].split(",")
        elif re.match(r"^-[j1]+$", a):
            as_json = as_json or "j" in a
            unique = unique or "1" in a
        else:
            filters.append(a)
        i += 1
    if fields is not None and not as_json:
        raise Fail("Cannot specify -o without -j")
    filters = parse_filters(filters, "lookup")
    vms = [with_fake_fields(vm) for vm in all_vms()]
    found = [vm for vm in vms if matches(vm, filters)]
    if unique and len(found) != 1:
        raise Fail("Requested unique lookup but found %d results." % len(found))
    if as_json:
        if fields is not None:
            found = [{f: vm[f] for f in fields if f in vm} for vm in found]
        sys.stdout.write(json.dumps(found, indent=2, sort_keys=True) + "\n")
    else:
        for vm in found:
            sys.stdout.write(vm["uuid"] + "\n")
    return 0


def sort_key(vm, fields):
    class K:
        def __init__(self, vm):
            self.vm = vm

        def __lt__(self, other):
            for f in fields:
                direction = 1
                if f[0] in "+-":
                    direction = -1 if f[0] == "-" else 1
                    f = f[1:]
                a, b = flatten(self.vm, f), flatten(other.vm, f)
                if a == b:
                    continue
                if a is None:
                    return direction < 0
                if b is None:
                    return direction > 0
                try:
                    less = a < b
                except TypeError:
                    less = str(a) < str(b)
                return less if direction > 0 else not less
            return False

    return K(vm)


def vmadm_list(rest):
    order = "uuid,type,ram,state,alias"
    sortby = "ram,uuid"
    parsable = False
    header = True
    filters = []
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-o", "--order", "-s", "--sortby"):
            i += 1
            if i >= len(rest):
                raise vmadm_usage("%s needs a list of fields" % a)
            if a in ("-o", "--order"):
                order = rest[i]
            else:
                sortby = rest[i]
        elif a.startswith("-") and re.match(r"^-[pHh]+$", a):
            if "p" in a:
                parsable = True
                header = False
            if "H" in a:
                header = False
            if "h" in a:
                header = True
        else:
            filters.append(a)
        i += 1
    filters = parse_filters(filters, "filter")
    order_fields = order.split(",")
    for f in order_fields:
        if re.match(r"^(disks|filesystems|nics)\.\*", f):
            raise Fail('Invalid order key: "%s"' % f)
    sort_fields = sortby.split(",")
    for f in sort_fields:
        if re.match(r"^(disks|filesystems|nics)\.\*", f):
            raise Fail('Invalid sort key: "%s"' % f)
        if not list_props(f.lstrip("+-")):
            raise Fail("invalid sort field: %s" % f)
    for f in order_fields:
        if not list_props(f):
            raise Fail("invalid order field: %s" % f)
    vms = [with_fake_fields(vm) for vm in all_vms()]
    vms = [vm for vm in vms if matches(vm, filters)]
    vms.sort(key=lambda vm: sort_key(vm, sort_fields))

    def line(values):
        if parsable:
            return ":".join(values)
        return "  ".join(v.ljust(list_props(f)[1]) for v, f in zip(values, order_fields)).rstrip()

    if header:
        sys.stdout.write(line([list_props(f)[0] for f in order_fields]) + "\n")
    for vm in vms:
        values = []
        for f in order_fields:
            v = flatten(vm, f)
            t = as_text(v) if (v or v == 0) else None
            values.append(t if t is not None else ("" if parsable else "-"))
        sys.stdout.write(line(values) + "\n")
    return 0


def parse_key_values(args):
    out = {}
    for a in args:
        if "=" not in a:
            raise vmadm_usage("Bad arguments: unable to split %s" % a)
        k, v = a.split("=", 1)
        out[k] = v
    return out


def vmadm_update(rest):
    """`vmadm update UUID [-f FILE]` (JSON on stdin or FILE) or
    `vmadm update UUID prop=value ...`: properties vmadm marks updatable for
    the brand, set_/remove_ of internal_metadata, customer_metadata, tags
    and routes, add_/remove_/update_ of nics and filesystems."""
    uuid = take_uuid("update", rest)
    others = [a for a in rest if a != uuid]
    kv = [a for a in others if "=" in a and not a.startswith("-")]
    if kv:
        payload = parse_key_values(kv)
    else:
        payload = read_payload(others)
    with Lock():
        vm = load_vm(uuid)
        if vm is None:
            raise Fail(not_found(uuid))
        errors = validate_payload(vm["brand"], "update", payload)
        raise_validation(errors, "update", vm["brand"])
        apply_update(vm, {k: normalize(k, v) for k, v in payload.items()})
        save_vm(vm)
    stderr("Successfully updated VM %s" % uuid)
    return 0


def apply_update(vm, payload):
    for key, value in payload.items():
        m = re.match(r"^(set|remove)_(internal_metadata|customer_metadata|tags|routes)$", key)
        if m:
            target = vm.setdefault(m.group(2), {})
            if m.group(1) == "set":
                target.update(value)
            else:
                for k in value:
                    target.pop(str(k), None)
            continue
        m = re.match(r"^(add|remove|update)_(nics|filesystems)$", key)
        if m:
            arr = vm.setdefault(m.group(2), [])
            ident = "mac" if m.group(2) == "nics" else "target"
            if m.group(1) == "add":
                for item in value:
                    if m.group(2) == "nics":
                        item.setdefault("interface", "%s%d" % ("eth" if vm["brand"] == LX else "net", len(arr)))
                        item.setdefault("mac", "90:b8:d0:%02x:%02x:%02x" % tuple(os.urandom(3)))
                    arr.append(item)
            elif m.group(1) == "remove":
                vm[m.group(2)] = [x for x in arr if x.get(ident) not in value]
            else:
                for item in value:
                    for x in arr:
                        if x.get(ident) == item.get(ident):
                            x.update(item)
            continue
        if value is None:
            vm.pop(key, None)
        else:
            vm[key] = value
        if key == "docker" and value:
            ns = vm.setdefault("internal_metadata_namespaces", [])
            if "docker" not in ns:
                ns.append("docker")
            vm["restart_init"] = False
            vm.setdefault("init_name", DOCKERINIT[vm["brand"]])
            vm.setdefault("internal_metadata", {}).setdefault(
                "docker:id", (vm["uuid"] + str(uuidlib.uuid4())).replace("-", "")
            )
    if vm.get("docker"):
        vm["zlog_mode"] = "gt-" if meta_true(vm, "docker:tty") else "g--"


def vmadm_validate(rest):
    ops = []
    i = 0
    while i < len(rest):
        if rest[i] in ("-f", "--file"):
            i += 2
            continue
        ops.append(rest[i])
        i += 1
    if not ops or ops[0] not in ("create", "update"):
        raise vmadm_usage("Will not validate without a valid action.")
    action = ops[0]
    if action == "update" and len(ops) != 2:
        raise vmadm_usage("Will not validate without a valid action and brand.")
    payload = read_payload(rest)
    brand = ops[1] if action == "update" else payload.get("brand")
    if brand not in BRANDS:
        raise Fail(json.dumps({"bad_brand": brand if brand is not None else "undefined"}, indent=2))
    errors = validate_payload(brand, action, payload)
    out = {k: v for k, v in errors.items() if k != "detail" and v}
    if out:
        raise Fail(json.dumps(out, indent=2))
    stderr("VALID '%s' payload for %s brand VMs." % (action, brand))
    return 0


# -- start, stop, kill, delete ----------------------------------------------


def supervisor_command(uuid):
    return [sys.executable, os.path.abspath(__file__), "_supervise", uuid]


def start_vm(uuid, provisioning=False, reset_count=True):
    """Starts VM `uuid`'s supervisor and waits until the zone runs (its init
    is forked) or has already come and gone. Returns the message."""
    with Lock():
        vm = load_vm(uuid)
        if vm is None:
            raise Fail("Unable to start VM %s: %s" % (uuid, not_found(uuid)))
        if vm.get("state") == "running":
            return "VM %s is already 'running'" % uuid
        if vm.get("state") not in ("stopped", "provisioning") or vm.get("zone_state") != "installed":
            raise Fail(
                'Unable to start VM %s: Cannot start vm from state "%s", must be "stopped".' % (uuid, vm.get("state"))
            )
        vm["autoboot"] = True
        if is_docker(vm) and reset_count:
            vm.setdefault("internal_metadata", {})["docker:restartcount"] = 0
        run = load_run(uuid)
        run["run"] += 1
        my_run = run["run"]
        os.makedirs(rp(".vmadm"), exist_ok=True)
        log = open(rp(".vmadm", uuid + ".supervisor.log"), "ab")
        child = subprocess.Popen(
            supervisor_command(uuid),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env=dict(os.environ, SDC_STANDIN_ROOT=ROOT),
        )
        log.close()
        run["supervisor"] = child.pid
        save_run(uuid, run)
        save_vm(vm)
    deadline = time.time() + 60
    while True:
        run = load_run(uuid)
        if run.get("started_run", 0) >= my_run or run.get("exited_run", 0) >= my_run:
            break
        if child.poll() is not None:
            run = load_run(uuid)
            if run.get("started_run", 0) >= my_run or run.get("exited_run", 0) >= my_run:
                break
            raise Fail(
                "Unable to start VM %s: the stand-in's supervisor exited (%s); see %s"
                % (uuid, child.returncode, rp(".vmadm", uuid + ".supervisor.log"))
            )
        if time.time() > deadline:
            raise Fail("Unable to start VM %s: timed out waiting for the zone to boot" % uuid)
        time.sleep(0.005)
    err = run.get("boot_error") or {}
    if err.get("run") == my_run:
        raise Fail("Unable to start VM %s: %s" % (uuid, err.get("message")))
    return "Successfully started VM %s" % uuid


def vmadm_start(rest):
    """`vmadm start UUID`: sets autoboot, resets docker:restartcount to 0
    (as VM.start does for a start not made by vmadmd) and boots the zone:
    see supervise. Starting a running VM is a no-op, exit 0, as in vmadm."""
    uuid = take_uuid("start", rest)
    extra = [a for a in rest if a != uuid]
    if extra:
        raise vmadm_usage("Invalid argument to start: %s" % extra[0])
    stderr(start_vm(uuid))
    return 0


def wait_exited(uuid, my_run, timeout):
    """Waits until run `my_run` of VM `uuid` has exited; False on timeout."""
    deadline = time.time() + timeout
    while True:
        run = load_run(uuid)
        if run.get("exited_run", 0) >= my_run:
            return True
        if not alive(run.get("supervisor")) and not init_is_live(None, run):
            run = load_run(uuid)
            if run.get("exited_run", 0) >= my_run:
                return True
            # The supervisor is gone without a word: the zone is down.
            with Lock():
                run = load_run(uuid)
                vm = load_vm(uuid)
                if run.get("exited_run", 0) < my_run and vm is not None:
                    mark_stopped(vm, run, my_run, 128 + signal.SIGKILL)
                    save_vm(vm)
                    save_run(uuid, run)
            return True
        if time.time() >= deadline:
            return False
        time.sleep(0.01)


def mark_stopped(vm, run, my_run, code):
    vm["state"] = "stopped"
    vm["zone_state"] = "installed"
    vm["exit_status"] = code
    vm["exit_timestamp"] = iso_ms()
    for k in ("pid", "boot_timestamp", "zoneid"):
        vm.pop(k, None)
    run["exited_run"] = max(run.get("exited_run", 0), my_run)
    run["init_pid"] = None
    run["a_pid"] = None


def vmadm_stop(rest):
    """`vmadm stop UUID [-F] [-t SECONDS]`: sets autoboot false (so the
    restart policy does not bring the zone back), then for docker VMs sends
    SIGTERM to the init and SIGKILL after -t seconds (vmadm's default: 10);
    other VMs get SIGTERM and 60 s. -F kills at once. Returns once the zone
    is down. A VM not running: exit 0 with vmadm's message, as vmadm."""
    uuid = take_uuid("stop", rest)
    force = False
    timeout = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == uuid:
            pass
        elif a in ("-F", "--force"):
            force = True
        elif a in ("-t", "--timeout"):
            i += 1
            try:
                timeout = float(rest[i])
            except (IndexError, ValueError):
                raise vmadm_usage("-t needs a number of seconds")
        else:
            raise vmadm_usage("Unexpected argument: %s" % a)
        i += 1
    with Lock():
        vm = load_vm(uuid)
        if vm is None:
            raise Fail(not_found(uuid))
        if timeout is not None and not is_docker(vm):
            raise Fail("Unable to stop VM %s: the -t option is only supported for docker and HVM VMs" % uuid)
        vm["autoboot"] = False
        save_vm(vm)
        run = load_run(uuid)
        if vm.get("state") != "running":
            stderr("VM %s is already not 'running' (currently: %s)" % (uuid, vm.get("state")))
            return 0
        my_run = run.get("started_run", 0)
        pid = run.get("init_pid")
        live = init_is_live(vm, run)
    if timeout is None:
        timeout = 10 if is_docker(vm) else 60
    if live:
        try:
            os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass
    if not force and not wait_exited(uuid, my_run, timeout):
        run = load_run(uuid)
        if init_is_live(vm, run):
            try:
                os.kill(run["init_pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    if not wait_exited(uuid, my_run, 30):
        raise Fail("Unable to stop VM %s: timed out waiting for the zone to halt" % uuid)
    stderr("Successfully completed stop for VM %s" % uuid)
    return 0


SIGNALS = {name: getattr(signal, name) for name in dir(signal) if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(signal, name), int)}


def parse_signal(s):
    if re.match(r"^\d+$", s):
        n = int(s)
        if n == 0 or n in SIGNALS.values():
            return n
        raise Fail('Unknown signal "%s"' % s)
    name = s if s.startswith("SIG") else "SIG" + s
    if name in SIGNALS:
        return SIGNALS[name]
    raise Fail('Unknown signal "%s"' % s)


def vmadm_kill(rest):
    """`vmadm kill [-s SIGNAL | -SIGNAL] UUID`: a signal (name with or
    without SIG, or number; default SIGTERM) to the zone's init. Not
    running: exit 1, "Cannot find running init PID for VM UUID"."""
    sig = None
    uuid = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-s", "--signal"):
            i += 1
            if i >= len(rest):
                raise vmadm_usage("-s needs a signal")
            sig = rest[i]
        elif a.startswith("-") and sig is None and len(a) > 1:
            sig = a[1:]
        elif uuid is None:
            uuid = a
        else:
            raise vmadm_usage("Too many arguments.")
        i += 1
    if uuid is None or not is_uuid(uuid):
        raise vmadm_usage("Invalid or missing argument UUID")
    if sig is None:
        sig = "SIGTERM"
    number = parse_signal(sig)
    vm = load_vm(uuid)
    if vm is None:
        raise Fail(not_found(uuid))
    run = load_run(uuid)
    if vm.get("zone_state") != "running" or not vm.get("pid") or not init_is_live(vm, run):
        raise Fail("Cannot find running init PID for VM %s" % uuid)
    try:
        os.kill(run["init_pid"], number)
    except ProcessLookupError:
        raise Fail("Cannot find running init PID for VM %s" % uuid)
    stderr('Sent signal "%s" to init process for VM %s' % (sig, uuid))
    return 0


def vmadm_reboot(rest):
    uuid = take_uuid("reboot", rest)
    force = "-F" in rest or "--force" in rest
    vm = load_vm(uuid)
    if vm is None:
        raise Fail(not_found(uuid))
    if vm.get("state") != "running":
        stderr("VM %s is already not 'running' (currently: %s)" % (uuid, vm.get("state")))
        return 0
    vmadm_stop([uuid] + (["-F"] if force else []))
    start_vm(uuid, reset_count=False)
    stderr("Successfully completed reboot for VM %s" % uuid)
    return 0


def vmadm_delete(rest):
    """`vmadm delete UUID`: kills the zone if it runs, destroys zones/UUID
    (and its snapshots) and forgets the VM. Unknown VM: exit 1."""
    uuid = take_uuid("delete", rest)
    with Lock():
        vm = load_vm(uuid)
        if vm is None:
            raise Fail("Failed to delete VM %s: %s" % (uuid, not_found(uuid)))
        vm["autoboot"] = False
        save_vm(vm)
        run = load_run(uuid)
        supervisor = run.get("supervisor")
        run["supervisor"] = None
        save_run(uuid, run)
        my_run = run.get("started_run", 0)
        if init_is_live(vm, run):
            try:
                os.kill(run["init_pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    while alive(supervisor) and time.time() < deadline:
        time.sleep(0.01)
    if alive(supervisor):
        try:
            os.kill(supervisor, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with Lock():
        run = load_run(uuid)
        if init_is_live(vm, run):
            os.kill(run["init_pid"], signal.SIGKILL)
        vm = load_vm(uuid)
        if vm is not None and vm.get("state") == "running":
            mark_stopped(vm, run, my_run, 128 + signal.SIGKILL)
            save_vm(vm)
        z = Zfs()
        ds = "%s/%s" % (POOL, uuid)
        if z.exists(ds):
            z.destroy(ds, recursive=True, dependents=True)
        for path in (vm_path(uuid), run_path(uuid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        rmtree(rp("zones", uuid))
    stderr("Successfully deleted VM %s" % uuid)
    return 0


# --------------------------------------------------------------------------
# The zone: supervisor, init
# --------------------------------------------------------------------------


class StdioLog:
    """zoneadmd's stdio.log: one JSON object per line,
    {"log": TEXT, "stream": "stdout"|"stderr", "time": RFC3339 ns}. Each
    line of output is one entry (a partial line is written as read, without
    waiting for its newline). When `max_size` is set and an entry would take
    the file past it, the file is first renamed stdio.log.YYYYMMDDTHHMMSSZ
    (with a ".NNNN" suffix, 0001 on, when that name is taken: rotated logs
    sort by name in the order they were written) and a new one begun."""

    def __init__(self, path, max_size):
        self.path = path
        self.max_size = max_size or 0
        self.fd = None
        self.size = 0
        self.decoders = {}
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)

    def _open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        self.fd = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = "%s.%s" % (self.path, stamp)
        n = 0
        while os.path.exists(target):
            n += 1
            target = "%s.%s.%04d" % (self.path, stamp, n)
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            pass
        self._open()

    def write(self, stream, data, final=False):
        dec = self.decoders.setdefault(stream, codecs.getincrementaldecoder("utf-8")(errors="replace"))
        text = dec.decode(data, final=final)
        if not text:
            return
        if self.fd is None:
            self._open()
        for piece in text.splitlines(keepends=True):
            entry = (
                json.dumps(
                    {"log": piece, "stream": stream, "time": iso_ns(time.time_ns())},
                    separators=(",", ":"),
                )
                + "\n"
            ).encode()
            if self.max_size and self.size > 0 and self.size + len(entry) > self.max_size:
                self._rotate()
            view = entry
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            self.size += len(entry)

    def close(self):
        for stream in list(self.decoders):
            self.write(stream, b"", final=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def json_array(vm, key):
    """An internal_metadata value holding a JSON array (docker:cmd...)."""
    v = meta(vm, key)
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    try:
        arr = json.loads(v) if isinstance(v, str) else None
    except ValueError:
        raise InitFail(ERR_PARSE_JSON, "failed to parse JSON(%s): %s" % (key, v))
    if not isinstance(arr, list):
        raise InitFail(ERR_PARSE_JSON, "failed to parse JSON(%s): %s" % (key, v))
    return [x if isinstance(x, str) else json.dumps(x) for x in arr]


class InitFail(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def launch_spec(vm):
    """What the init of VM `vm` runs, as dockerinit would: argv, env,
    workdir, user, stdin and tty. Non-docker VMs run init_name."""
    spec = {
        "root": os.path.join(vm["zonepath"], "root"),
        "hostname": vm.get("hostname") or vm["uuid"],
        "open_stdin": False,
        "tty": False,
        "filesystems": vm.get("filesystems") or [],
        "zlog_max_size": vm.get("zlog_max_size") or 0,
        "wait_for_attach": meta(vm, "docker:wait_for_attach") is not None,
    }
    if is_docker(vm):
        spec["docker"] = True
        spec["open_stdin"] = meta_true(vm, "docker:open_stdin")
        spec["tty"] = meta_true(vm, "docker:tty")
        spec["workdir"] = meta(vm, "docker:workdir")
        spec["user"] = meta(vm, "docker:user")
    else:
        spec["docker"] = False
        spec["argv"] = [vm.get("init_name") or "/sbin/init"]
        spec["env"] = {"PATH": DEFAULT_PATH, "HOME": "/", "TERM": DEFAULT_TERM}
        spec["workdir"] = None
        spec["user"] = None
    return spec


def supervise(uuid):
    """`standin.py _supervise UUID` (started by vmadm start, own session):
    boots the zone, logs its init's output, records its exit, applies the
    restart policy the way vmadmd does (docker:restartpolicy always or
    unless-stopped, on-failure[:N]; only while autoboot is true, so a
    `vmadm stop` ends it; docker:restartcount counts restarts, the delay is
    docker:restartdelay or 100 ms * 2^count, doubled after each restart,
    back to 100 ms after a run of more than 10 s), and exits when the zone
    stays down or another supervisor takes over."""
    me = os.getpid()
    close_stdin = {"flag": False}

    def on_usr1(signum, frame):
        close_stdin["flag"] = True

    signal.signal(signal.SIGUSR1, on_usr1)
    while True:
        with Lock():
            vm = load_vm(uuid)
            run = load_run(uuid)
            if vm is None or run.get("supervisor") != me:
                return 0
            my_run = run["run"]
            try:
                spec = launch_spec(vm)
            except InitFail as e:
                spec = {"error": e}
        started = time.time()
        code, boot_error = run_zone(uuid, vm, spec, my_run, me, close_stdin)
        close_stdin["flag"] = False
        runtime = time.time() - started
        with Lock():
            vm = load_vm(uuid)
            run = load_run(uuid)
            if vm is None:
                return 0
            mark_stopped(vm, run, my_run, code)
            if boot_error:
                run["boot_error"] = {"run": my_run, "message": boot_error}
            mine = run.get("supervisor") == me
            delay = restart_delay(vm, code, runtime) if mine else None
            if delay is None and mine:
                run["supervisor"] = None
            save_vm(vm)
            save_run(uuid, run)
        if delay is None:
            return 0
        time.sleep(delay / 1000.0)
        with Lock():
            vm = load_vm(uuid)
            run = load_run(uuid)
            if (
                vm is None
                or run.get("supervisor") != me
                or vm.get("zone_state") != "installed"
                or vm.get("autoboot") is not True
            ):
                if vm is not None and run.get("supervisor") == me:
                    run["supervisor"] = None
                    save_run(uuid, run)
                return 0
            im = vm.setdefault("internal_metadata", {})
            try:
                count = int(im.get("docker:restartcount") or 0)
            except (TypeError, ValueError):
                count = 0
            im["docker:restartcount"] = count + 1
            im["docker:restartdelay"] = delay * 2
            run["run"] += 1
            save_vm(vm)
            save_run(uuid, run)


def restart_delay(vm, code, runtime):
    """applyDockerRestartPolicy: the delay in ms before the zone is started
    again, or None when it stays down."""
    if not is_docker(vm) or vm.get("autoboot") is not True:
        return None
    im = vm.get("internal_metadata") or {}
    policy = im.get("docker:restartpolicy")
    if not policy:
        return None
    try:
        count = int(im.get("docker:restartcount") or 0)
    except (TypeError, ValueError):
        count = 0
    if runtime > DOCKER_RUNTIME_DELAY_RESET:
        delay = 100
    elif im.get("docker:restartdelay"):
        delay = int(im["docker:restartdelay"])
    else:
        delay = 100 * (2**count)
    parts = str(policy).split(":")
    max_restarts = 0
    if len(parts) == 2 and parts[0] == "on-failure" and parts[1].isdigit():
        policy = "on-failure"
        max_restarts = int(parts[1])
    elif len(parts) != 1:
        return None
    if policy == "on-failure" and not code:
        return None
    if policy not in ("always", "on-failure", "unless-stopped"):
        return None
    if max_restarts > 0 and count >= max_restarts:
        return None
    return delay


def run_zone(uuid, vm, spec, my_run, me, close_stdin):
    """One boot of the zone: forks the namespace holder (which forks the
    init), logs output until the init is gone, returns the exit status
    (128+signal for a signal)."""
    zonepath = vm["zonepath"]
    log = StdioLog(os.path.join(zonepath, "logs", "stdio.log"), spec.get("zlog_max_size"))
    if "error" in spec:
        log.write("stderr", ("dockerinit FATAL (code: %d): %s\n" % (spec["error"].code, spec["error"].message)).encode(), True)
        log.close()
        return spec["error"].code, None
    standin_dir = os.path.join(zonepath, ".standin")
    os.makedirs(standin_dir, mode=0o700, exist_ok=True)
    fifo_path = os.path.join(standin_dir, "stdin")
    fifo_fd = None
    if spec["open_stdin"]:
        try:
            st = os.lstat(fifo_path)
            if not stat.S_ISFIFO(st.st_mode):
                os.unlink(fifo_path)
                raise FileNotFoundError
        except FileNotFoundError:
            os.mkfifo(fifo_path, 0o600)
        fifo_fd = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    master = slave = None
    out_r = out_w = err_r = err_w = None
    if spec["tty"]:
        master, slave = os.openpty()
        os.set_inheritable(slave, True)
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    pid_a = os.fork()
    if pid_a == 0:
        try:
            for fd in (out_r, err_r, st_r, master, fifo_fd):
                if fd is not None:
                    os.close(fd)
            holder(uuid, vm, spec, me, st_w, out_w, err_w, slave, fifo_path)
        except BaseException as e:  # noqa: BLE001 - the child must never return
            try:
                os.write(st_w, ("fail %d %s\n" % (ERR_EXEC_FAILED, str(e).replace("\n", " "))).encode())
            except OSError:
                pass
        os._exit(1)
    for fd in (out_w, err_w, st_w, slave):
        if fd is not None:
            os.close(fd)
    status_buf = b""
    init_pid = None
    exit_status = None
    failure = None
    # The holder reports "pid N" once the init is forked, "exit STATUS" when
    # it is gone (or "fail CODE MESSAGE" when the zone could not be set up).
    while init_pid is None and failure is None and exit_status is None:
        chunk = os.read(st_r, 4096)
        if not chunk:
            break
        status_buf += chunk
        while b"\n" in status_buf:
            line, status_buf = status_buf.split(b"\n", 1)
            init_pid, exit_status, failure = parse_status(line, init_pid, exit_status, failure)
    if init_pid is not None:
        with Lock():
            vm2 = load_vm(uuid)
            run = load_run(uuid)
            if vm2 is not None and run.get("supervisor") == me:
                vm2["state"] = "running"
                vm2["zone_state"] = "running"
                vm2["pid"] = init_pid
                vm2["zoneid"] = init_pid
                vm2["boot_timestamp"] = iso_ms()
                vm2.pop("failed", None)
                run["started_run"] = my_run
                run["init_pid"] = init_pid
                run["a_pid"] = pid_a
                save_vm(vm2)
                save_run(uuid, run)
            else:
                try:
                    os.kill(init_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    readers = {}
    if out_r is not None:
        readers[out_r] = "stdout"
        readers[err_r] = "stderr"
    if master is not None:
        readers[master] = "stdout"
    status_open = True
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    poller.register(st_r, select.POLLIN)
    tty_stdin = fifo_fd if (master is not None and fifo_fd is not None) else None
    if tty_stdin is not None:
        poller.register(tty_stdin, select.POLLIN)
    while readers or status_open:
        if close_stdin["flag"] and fifo_fd is not None:
            if master is not None:
                try:
                    os.write(master, b"\x04")
                except OSError:
                    pass
                if tty_stdin is not None:
                    poller.unregister(tty_stdin)
                    tty_stdin = None
            os.close(fifo_fd)
            fifo_fd = None
        try:
            events = poller.poll(200)
        except InterruptedError:
            continue
        for fd, ev in events:
            if fd == st_r:
                chunk = os.read(st_r, 4096)
                if not chunk:
                    poller.unregister(st_r)
                    status_open = False
                    continue
                status_buf += chunk
                while b"\n" in status_buf:
                    line, status_buf = status_buf.split(b"\n", 1)
                    init_pid, exit_status, failure = parse_status(line, init_pid, exit_status, failure)
            elif fd == tty_stdin:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    try:
                        os.write(master, data)
                    except OSError:
                        pass
            elif fd in readers:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if data:
                    log.write(readers[fd], data)
                else:
                    poller.unregister(fd)
                    log.write(readers[fd], b"", final=True)
                    del readers[fd]
                    if fd != master:
                        os.close(fd)
        if master is not None and master in readers and exit_status is not None:
            # Every process of the zone is gone once its init is: the pty
            # has no more writers. Drain what is left.
            while True:
                r, _, _ = select.select([master], [], [], 0.05)
                if not r:
                    break
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write("stdout", data)
            poller.unregister(master)
            del readers[master]
    try:
        os.waitpid(pid_a, 0)
    except ChildProcessError:
        pass
    for fd in (master, fifo_fd, st_r):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    log.close()
    if failure is not None:
        return failure[0], "the zone could not boot: %s" % failure[1]
    if exit_status is None:
        return 128 + signal.SIGKILL, (None if init_pid else "the zone could not boot")
    if os.WIFSIGNALED(exit_status):
        return 128 + os.WTERMSIG(exit_status), None
    return os.WEXITSTATUS(exit_status), None


def parse_status(line, init_pid, exit_status, failure):
    parts = line.decode(errors="replace").split(" ", 2)
    if parts[0] == "pid":
        init_pid = int(parts[1])
    elif parts[0] == "exit":
        exit_status = int(parts[1])
    elif parts[0] == "fail":
        failure = (int(parts[1]), parts[2] if len(parts) > 2 else "")
    return init_pid, exit_status, failure


def holder(uuid, vm, spec, supervisor_pid, st_w, out_w, err_w, slave, fifo_path):
    """The namespace holder: new mount, PID and UTS namespaces, the zone's
    mounts, then the init (PID 1 of the namespace). Reports to the
    supervisor on `st_w`; dies with the supervisor."""
    die_with_parent(supervisor_pid)
    sys_unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS)
    sys_mount(None, "/", None, MS_REC | MS_PRIVATE)
    sys_sethostname(spec["hostname"][:64])
    root = spec["root"]
    if not os.path.isdir(root):
        raise OSError("zone root %s does not exist" % root)
    mount_zone(root, spec)
    me = os.getpid()
    pid_b = os.fork()
    if pid_b == 0:
        try:
            init(uuid, vm, spec, me, out_w, err_w, slave, fifo_path)
        except InitFail as e:
            report_init_failure(e)
        except BaseException as e:  # noqa: BLE001
            report_init_failure(InitFail(ERR_EXEC_FAILED, str(e)))
        os._exit(1)
    for fd in (out_w, err_w, slave):
        if fd is not None:
            os.close(fd)
    os.write(st_w, ("pid %d\n" % pid_b).encode())
    while True:
        try:
            _, status = os.waitpid(pid_b, 0)
            break
        except InterruptedError:
            continue
    os.write(st_w, ("exit %d\n" % status).encode())
    os._exit(0)


def report_init_failure(e):
    """dockerinit's fatal(): the message (on the init's stderr, so in the
    log, where the platform writes it to /var/log/sdc-dockerinit.log), and
    its code as the exit status."""
    try:
        os.write(2, ("dockerinit FATAL (code: %d): %s\n" % (e.code, e.message.rstrip("\n"))).encode())
    except OSError:
        pass
    os._exit(e.code)


def mount_zone(root, spec):
    """The zone's mounts, private to its mount namespace: a /dev with the
    usual nodes (and the host's devpts for ptys), and each filesystems entry
    of type lofs bound at its target (read-only with option "ro")."""
    dev = secure_join(root, "/dev")
    os.makedirs(dev, mode=0o755, exist_ok=True)
    sys_mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k")
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)):
        path = os.path.join(dev, name)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    if os.path.isdir("/dev/pts"):
        sys_mount("/dev/pts", os.path.join(dev, "pts"), None, MS_BIND)
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    sys_mount("shm", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for fs in spec["filesystems"]:
        kind = fs.get("type", "lofs")
        source, target = fs.get("source"), fs.get("target")
        if not source or not target:
            continue
        options = fs.get("options") or []
        where = secure_join(root, target)
        if kind == "lofs":
            if os.path.isdir(source):
                os.makedirs(where, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(where), exist_ok=True)
                if not os.path.exists(where):
                    open(where, "a").close()
            sys_mount(source, where, None, MS_BIND | MS_REC)
            if "ro" in options:
                sys_mount(None, where, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        elif kind == "tmpfs":
            os.makedirs(where, exist_ok=True)
            sys_mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, ",".join(o for o in options if o != "ro") or None)


def read_db(root_fs, name):
    """Lines of /etc/passwd or /etc/group of the zone (after chroot)."""
    try:
        with open(name, "r", errors="replace") as f:
            return [l.rstrip("\n").split(":") for l in f if l.strip() and not l.startswith("#")]
    except OSError:
        return []


def resolve_user(user):
    """dockerinit's getUserGroupData: "uid", "uid:gid", "user", "user:group"
    (names from the zone's /etc/passwd and /etc/group). Returns (uid, gid,
    home, name, groups)."""
    user = user or "0"
    group = None
    if ":" in user:
        user, group = user.split(":", 1)
    passwd = read_db(None, "/etc/passwd")
    groups = read_db(None, "/etc/group")
    pw = next((p for p in passwd if len(p) >= 6 and p[0] == user), None)
    if pw is None:
        if not re.match(r"^\d+$", user):
            raise InitFail(ERR_UID_NAN, "UID is not a number: %s" % user)
        pw = next((p for p in passwd if len(p) >= 6 and p[2] == user), None)
        uid = int(user)
    else:
        uid = int(pw[2])
    gid = int(pw[3]) if pw else 0
    if group is not None:
        gr = next((g for g in groups if len(g) >= 3 and g[0] == group), None)
        if gr is not None:
            gid = int(gr[2])
        elif re.match(r"^\d+$", group):
            gid = int(group)
        else:
            raise InitFail(ERR_GID_NAN, "GID is not a number: %s" % group)
    name = pw[0] if pw else None
    extra = []
    if name is not None:
        extra = [int(g[2]) for g in groups if len(g) >= 4 and name in g[3].split(",") and g[2].isdigit()]
    home = pw[5] if pw else "/"
    return uid, gid, home, name, sorted(set([gid] + extra))


def exec_name(cmd, env, workdir):
    """dockerinit's execName: the path of `cmd`, searched in PATH."""
    if "/" in cmd:
        try:
            st = os.stat(cmd)
        except OSError as e:
            raise InitFail(ERR_STAT_CMD, "stat(%s): %s" % (cmd, e.strerror))
        if stat.S_ISDIR(st.st_mode):
            raise InitFail(ERR_STAT_DIR, "stat(%s): is a directory" % cmd)
        if not st.st_mode & stat.S_IXUSR:
            raise InitFail(ERR_STAT_EXEC, "stat(%s): is not executable" % cmd)
        return cmd
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        base = d if d.startswith("/") else os.path.join(workdir, d)
        path = os.path.join(base, cmd)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) or not st.st_mode & stat.S_IXUSR:
            continue
        return path
    raise InitFail(ERR_NOT_FOUND, "'%s' not found in PATH" % cmd)


def wait_for_attach(uuid):
    """dockerinit's waitIfAttaching: while internal_metadata has
    docker:wait_for_attach (a deadline, ms since the epoch), wait (with
    customer_metadata __dockerinit_waiting_for_attach set) until someone
    removes it; past the deadline the init fails (code 45)."""
    did_put = False
    while True:
        vm = read_json(vm_path(uuid), {}) or {}
        timeout = (vm.get("internal_metadata") or {}).get("docker:wait_for_attach")
        if timeout is None:
            break
        try:
            deadline = int(str(timeout))
        except ValueError:
            deadline = 0
        if deadline <= 0:
            raise InitFail(ERR_ATTACH_NOT_TIMESTAMP, "Invalid value for 'docker:wait_for_attach'")
        if not did_put:
            with Lock():
                vm = load_vm(uuid)
                if vm is not None:
                    vm.setdefault("customer_metadata", {})["__dockerinit_waiting_for_attach"] = str(timeout)
                    save_vm(vm)
            did_put = True
        if deadline < int(time.time() * 1000):
            raise InitFail(ERR_ATTACH_TIMEDOUT, "Timed out waiting for attach")
        time.sleep(0.05)
    if did_put:
        with Lock():
            vm = load_vm(uuid)
            if vm is not None:
                vm.get("customer_metadata", {}).pop("__dockerinit_waiting_for_attach", None)
                save_vm(vm)


def init(uuid, vm, spec, holder_pid, out_w, err_w, slave, fifo_path):
    """PID 1 of the zone: mounts /proc, sets up stdio, waits for an attach
    when asked to, chroots into the zone root and execs the command the way
    dockerinit does (environment, user, workdir, PATH search, exit codes)."""
    die_with_parent(holder_pid)
    os.setsid()
    root = spec["root"]
    procdir = secure_join(root, "/proc")
    os.makedirs(procdir, mode=0o555, exist_ok=True)
    sys_mount("proc", procdir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # stdio: the FIFO or /dev/null; the log pipes or the pty.
    if spec["open_stdin"]:
        stdin_fd = os.open(fifo_path, os.O_RDONLY) if slave is None else slave
    else:
        stdin_fd = os.open("/dev/null", os.O_RDONLY)
    if slave is not None:
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.dup2(stdin_fd, 0)
        os.dup2(slave, 1)
        os.dup2(slave, 2)
    else:
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
    os.closerange(3, 65536)
    if spec["wait_for_attach"]:
        wait_for_attach(uuid)
    os.chroot(root)
    os.chdir("/")
    if spec["docker"]:
        argv = json_array(vm, "docker:entrypoint") + json_array(vm, "docker:cmd")
        if not argv:
            raise InitFail(ERR_NO_COMMAND, "No command specified")
        uid, gid, home, name, groups = resolve_user(spec["user"])
        env = {"TERM": DEFAULT_TERM, "HOME": home, "PATH": DEFAULT_PATH, "HOSTNAME": spec["hostname"]}
        for key in ("docker:linkEnv", "docker:env"):
            for entry in json_array(vm, key):
                if "=" in entry:
                    k, v = entry.split("=", 1)
                    env[k] = v
        workdir = "/"
        wd = spec.get("workdir")
        if wd:
            if wd.startswith("~"):
                wd = home + wd[1:]
            workdir = os.path.normpath(os.path.join("/", wd))
        try:
            os.makedirs(workdir, mode=0o755, exist_ok=True)
        except OSError as e:
            raise InitFail(ERR_MKDIR, "mkdirp(%s) failed: %s" % (workdir, e.strerror))
        try:
            os.setgroups(groups)
        except OSError as e:
            raise InitFail(ERR_INITGROUPS, "initgroups failed: %s" % e.strerror)
        try:
            os.setgid(gid)
        except OSError as e:
            raise InitFail(ERR_SETGID, "setgid(%d): %s" % (gid, e.strerror))
        try:
            os.setuid(uid)
        except OSError as e:
            raise InitFail(ERR_SETUID, "setuid(%d): %s" % (uid, e.strerror))
        try:
            os.chdir(workdir)
        except OSError as e:
            raise InitFail(ERR_CHDIR, "chdir(%s) failed: %s" % (workdir, e.strerror))
    else:
        argv = spec["argv"]
        env = spec["env"]
        workdir = "/"
    path = exec_name(argv[0], env, workdir)
    reset_signals()
    try:
        os.execve(path, argv, env)
    except OSError as e:
        raise InitFail(ERR_EXEC_FAILED, "execve(%s) failed: %s" % (path, e.strerror))


# --------------------------------------------------------------------------
# zlogin
# --------------------------------------------------------------------------


def zlogin_usage():
    return Fail("usage: zlogin [-dinCEINQS] [-e cmdchar] [-l user] zonename [command [args ...] ]", 2)


def zone_user(name):
    """(uid, gid, home, groups) of `name` (or a number) in the zone."""
    passwd = read_db(None, "/etc/passwd")
    pw = next((p for p in passwd if len(p) >= 6 and p[0] == name), None)
    if pw is None and re.match(r"^\d+$", name):
        pw = next((p for p in passwd if len(p) >= 6 and p[2] == name), None)
        if pw is None:
            return int(name), int(name), "/", [int(name)]
    if pw is None:
        if name == "root":
            return 0, 0, "/root", [0]
        return None
    groups = read_db(None, "/etc/group")
    extra = [int(g[2]) for g in groups if len(g) >= 4 and pw[0] in g[3].split(",") and g[2].isdigit()]
    return int(pw[2]), int(pw[3]), pw[5] or "/", sorted(set([int(pw[3])] + extra))


def zlogin_main(args):
    """zlogin(1): `zlogin [-Q] [-t|-T] [-i] [-N] [-l USER] ZONE [CMD ...]`
    and `zlogin [-Q] [-N] -I ZONE`.

    With a command: the command runs in the zone (its PID, mount and UTS
    namespaces, chrooted into its root, cwd /, as USER (default root), with
    PATH, HOME, LOGNAME, USER and, under a pty, TERM), exec'd directly (as
    with -i; real zlogin without -i passes it to `su root -c`), inheriting
    zlogin's stdin, stdout and stderr; zlogin exits with its status (128+N
    for signal N, 127 for a command not found, 126 for one not executable).
    Without a command: the user's shell as a login shell. A pty is used when
    stdin is a terminal (no command, or -i), or always with -t (a stand-in
    extension for callers on pipes), never with -T; then stdin and stdout
    are copied to and from it, and EOF on stdin sends ^D once. The zone must
    be running ("login allowed only to running zones").

    -I attaches to the zone's init (the zfd devices): what zlogin reads on
    stdin is written to the init's stdin FIFO (docker:open_stdin zones; on
    EOF the init's stdin is closed, unless -N), and the init's output
    logged from now on is streamed (stdout entries to stdout, stderr to
    stderr) until the init exits; exit 0. The zone must be a docker zone
    (zlog-mode) and, in the stand-in, running.
    """
    flags = set()
    user = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        j = 1
        while j < len(a):
            c = a[j]
            if c in "l" or c in "eR":
                value = a[j + 1 :] if j + 1 < len(a) else None
                if value is None:
                    i += 1
                    if i >= len(args):
                        raise zlogin_usage()
                    value = args[i]
                if c == "l":
                    user = value
                break
            if c not in "dinCEINQStT":
                raise zlogin_usage()
            flags.add(c)
            j += 1
        i += 1
    rest = args[i:]
    if not rest:
        raise zlogin_usage()
    zonename, command = rest[0], rest[1:]
    if "C" in flags:
        raise Fail("zlogin: console login (-C) is not supported by the stand-in")
    if "I" in flags and command:
        raise Fail("zlogin: Commands may not be specified for console login.\n" + zlogin_usage().message, 2)
    if "I" in flags and user is not None:
        raise Fail("zlogin: -l may not be specified for console login\n" + zlogin_usage().message, 2)
    if "N" in flags and "I" not in flags:
        raise Fail("zlogin: -N may only be specified with -I\n" + zlogin_usage().message, 2)
    vm = load_vm(zonename)
    if vm is None:
        vm = next((v for v in all_vms() if v.get("zonename") == zonename), None)
    if vm is None:
        raise Fail("zlogin: zone '%s' unknown" % zonename)
    uuid = vm["uuid"]
    run = load_run(uuid)
    if "I" in flags:
        return zlogin_attach(vm, run, flags)
    if vm.get("zone_state") != "running" or not init_is_live(vm, run):
        raise Fail(
            "zlogin: login allowed only to running zones (%s is '%s')." % (zonename, vm.get("zone_state", "configured"))
        )
    use_pty = "t" in flags or ("T" not in flags and os.isatty(0) and (not command or "i" in flags))
    return zlogin_run(vm, run, command, user or "root", use_pty, "Q" in flags)


def enter_zone(vm, run):
    """Opens the init's namespaces and joins its PID namespace (for the
    children forked next). Returns the mount and UTS namespace fds."""
    pid = run["init_pid"]
    try:
        fds = {k: os.open("/proc/%d/ns/%s" % (pid, k), os.O_RDONLY | os.O_CLOEXEC) for k in ("pid", "mnt", "uts")}
    except OSError:
        raise Fail("zlogin: login allowed only to running zones (%s is '%s')." % (vm["uuid"], "down"))
    sys_setns(fds["pid"], CLONE_NEWPID)
    os.close(fds.pop("pid"))
    return fds


def zone_child(vm, fds, command, user, use_pty, slave=None):
    """In the forked child: join the zone, become the user, exec."""
    try:
        if slave is not None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
        sys_setns(fds["mnt"], CLONE_NEWNS)
        sys_setns(fds["uts"], CLONE_NEWUTS)
        os.chroot(os.path.join(vm["zonepath"], "root"))
        os.chdir("/")
        who = zone_user(user)
        if who is None:
            os.write(2, ("zlogin: user %s does not exist in the zone\n" % user).encode())
            os._exit(1)
        uid, gid, home, groups = who
        env = {"PATH": DEFAULT_PATH, "HOME": home, "LOGNAME": user, "USER": user}
        if use_pty:
            env["TERM"] = os.environ.get("TERM") or DEFAULT_TERM
        shell = "/bin/sh"
        for p in read_db(None, "/etc/passwd"):
            if len(p) >= 7 and p[0] == user and p[6]:
                shell = p[6]
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        if not command:
            argv = ["-" + os.path.basename(shell)]
            path = shell
        else:
            argv = command
            path = None
            if "/" in command[0]:
                path = command[0]
            else:
                for d in env["PATH"].split(":"):
                    cand = os.path.join(d, command[0])
                    if os.path.isfile(cand) and os.access(cand, os.X_OK):
                        path = cand
                        break
            if path is None or not os.path.exists(path):
                os.write(2, ("zlogin: %s: not found\n" % command[0]).encode())
                os._exit(127)
        reset_signals()
        try:
            os.execve(path, argv, env)
        except OSError as e:
            os.write(2, ("zlogin: %s: %s\n" % (argv[0], e.strerror)).encode())
            os._exit(127 if e.errno == errno.ENOENT else 126)
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, ("zlogin: %s\n" % e).encode())
        finally:
            os._exit(1)


def status_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def zlogin_run(vm, run, command, user, use_pty, quiet):
    fds = enter_zone(vm, run)
    if not use_pty:
        try:
            child = os.fork()
        except OSError:
            raise Fail("zlogin: login allowed only to running zones (%s is 'down')." % vm["uuid"])
        if child == 0:
            zone_child(vm, fds, command, user, False)
        for fd in fds.values():
            os.close(fd)

        def forward(signum, frame):
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

        # As zlogin: SIGINT is passed on; SIGTERM and SIGHUP end zlogin
        # (main's handlers) and leave the command to the zone.
        signal.signal(signal.SIGINT, forward)
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        return status_code(status)
    master, slave = os.openpty()
    pts = os.ttyname(slave).replace("/dev/", "", 1)
    stdin_tty = os.isatty(0)
    saved = None
    if stdin_tty:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass
    try:
        child = os.fork()
    except OSError:
        raise Fail("zlogin: login allowed only to running zones (%s is 'down')." % vm["uuid"])
    if child == 0:
        os.close(master)
        zone_child(vm, fds, command, user, True, slave)
    # The slave stays open here: its input queue tells when the command has
    # read everything sent, and so when an end of input can be sent.
    for fd in fds.values():
        os.close(fd)
    if not quiet:
        sys.stdout.write("[Connected to zone '%s' %s]\n" % (vm["uuid"], pts))
        sys.stdout.flush()
    if stdin_tty:
        saved = termios.tcgetattr(0)
        tty.setraw(0)

        def winch(signum, frame):
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

        signal.signal(signal.SIGWINCH, winch)

    # SIGTERM and SIGHUP end zlogin (main's handlers): the pty closes and
    # the session in the zone gets its hangup.
    status = None
    stdin_open = True
    eof_pending = False
    last_eof = 0.0
    try:
        while True:
            fds_r = [master] + ([0] if stdin_open else [])
            try:
                r, _, _ = select.select(fds_r, [], [], 0.02)
            except InterruptedError:
                continue
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if data:
                    write_all(1, data)
                elif status is not None:
                    break
            if 0 in r:
                data = os.read(0, 65536)
                if data:
                    write_all(master, data)
                else:
                    stdin_open = False
                    eof_pending = True
            if eof_pending and pending_input(slave) == 0 and time.monotonic() - last_eof >= 0.1:
                # End of input: the terminal's EOF character in canonical
                # mode, ^D otherwise (a line editor's end of input), each
                # time the command has read everything before it; again
                # while it keeps reading (an EOF sent in canonical mode is
                # lost when the reader switches to raw mode first).
                attrs = termios.tcgetattr(slave)
                if attrs[3] & termios.ICANON:
                    eof = attrs[6][termios.VEOF]
                    write_all(master, eof if isinstance(eof, bytes) else bytes([eof]))
                else:
                    write_all(master, b"\x04")
                last_eof = time.monotonic()
            if status is None:
                pid, st = os.waitpid(child, os.WNOHANG)
                if pid == child:
                    status = st
            if status is not None and master not in r:
                break
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    os.close(slave)
    os.close(master)
    if status is None:
        _, status = os.waitpid(child, 0)
    if not quiet:
        sys.stdout.write("\n[Connection to zone '%s' %s closed]\n" % (vm["uuid"], pts))
    return status_code(status)


def pending_input(fd):
    """Bytes waiting in a terminal's input queue."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    except OSError:
        return 0


def write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        data = data[n:]


class LogFollower:
    """Reads stdio.log from a point on, across rotations."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.ino = None
        self.buf = b""
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
            self.ino = os.fstat(self.fd).st_ino
        except FileNotFoundError:
            pass

    def _sequence(self):
        d = os.path.dirname(self.path)
        base = os.path.basename(self.path)
        try:
            names = sorted(n for n in os.listdir(d) if n.startswith(base + "."))
        except FileNotFoundError:
            names = []
        return [os.path.join(d, n) for n in names] + [self.path]

    def _next(self):
        """The file after the current one (by inode), or None."""
        seq = self._sequence()
        for i, p in enumerate(seq):
            try:
                if os.stat(p).st_ino == self.ino:
                    return seq[i + 1] if i + 1 < len(seq) else None
            except FileNotFoundError:
                continue
        return self.path if os.path.exists(self.path) else None

    def read(self):
        """Complete lines written since the last call."""
        out = []
        while True:
            if self.fd is None:
                try:
                    self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                    self.ino = os.fstat(self.fd).st_ino
                except FileNotFoundError:
                    return out
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.buf += chunk
            if b"\n" in self.buf:
                lines, self.buf = self.buf.rsplit(b"\n", 1)
                out += lines.split(b"\n")
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == self.ino:
                return out
            nxt = self._next()
            if nxt is None:
                return out
            # Finished with a rotated file: on to the next one.
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.buf += chunk
            if self.buf:
                out += [l for l in self.buf.split(b"\n") if l]
                self.buf = b""
            os.close(self.fd)
            try:
                self.fd = os.open(nxt, os.O_RDONLY | os.O_CLOEXEC)
                self.ino = os.fstat(self.fd).st_ino
            except FileNotFoundError:
                self.fd = None


def zlogin_attach(vm, run, flags):
    uuid = vm["uuid"]
    if not vm.get("zlog_mode"):
        raise Fail("zlogin: 'zlog-mode' is not configured on the zone")
    if vm.get("zone_state") != "running" or not init_is_live(vm, run):
        raise Fail("zlogin: login allowed only to running zones (%s is '%s')." % (uuid, vm.get("zone_state", "configured")))
    my_run = run.get("started_run", 0)
    follower = LogFollower(os.path.join(vm["zonepath"], "logs", "stdio.log"))
    quiet = "Q" in flags
    if not quiet:
        sys.stdout.write("[Connected to zone '%s' interactively]\n" % uuid)
        sys.stdout.flush()
    if meta_true(vm, "docker:open_stdin"):
        fifo = os.path.join(vm["zonepath"], ".standin", "stdin")
        supervisor = run.get("supervisor")

        def pump():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return
            flags_ = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags_ & ~os.O_NONBLOCK)
            try:
                while True:
                    data = os.read(0, 65536)
                    if not data:
                        break
                    write_all(fd, data)
            except OSError:
                pass
            if "N" not in flags and alive(supervisor):
                try:
                    os.kill(supervisor, signal.SIGUSR1)
                except ProcessLookupError:
                    pass
            os.close(fd)

        threading.Thread(target=pump, daemon=True).start()

    def emit(lines):
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            data = str(entry.get("log", "")).encode("utf-8", errors="replace")
            fd = 2 if entry.get("stream") == "stderr" else 1
            write_all(fd, data)

    while True:
        lines = follower.read()
        emit(lines)
        if lines:
            continue
        run = load_run(uuid)
        if run.get("exited_run", 0) >= my_run or load_vm(uuid) is None:
            emit(follower.read())
            break
        time.sleep(0.02)
    if not quiet:
        sys.stdout.write("\n[Interactive connection to zone '%s' closed]\n" % uuid)
    return 0


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

TOOLS = {
    "vmadm": vmadm_main,
    "zfs": zfs_main,
    "imgadm": imgadm_main,
    "zlogin": zlogin_main,
    "sysinfo": sysinfo_main,
}


def main():
    global ROOT
    if len(sys.argv) < 2:
        sys.stderr.write("usage: standin.py {%s} ARGS...\n" % ",".join(sorted(TOOLS)))
        os._exit(2)
    ROOT = os.environ.get("SDC_STANDIN_ROOT")
    if not ROOT or not os.path.isabs(ROOT) or not os.path.isdir(ROOT):
        sys.stderr.write("standin.py: SDC_STANDIN_ROOT must name an existing directory (got %r)\n" % ROOT)
        os._exit(2)
    ROOT = os.path.realpath(ROOT)
    tool, args = sys.argv[1], sys.argv[2:]
    if tool == "_supervise":
        try:
            code = supervise(args[0])
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    if tool not in TOOLS:
        sys.stderr.write("standin.py: unknown tool %r (one of %s)\n" % (tool, ", ".join(sorted(TOOLS))))
        os._exit(2)
    code = 1

    def on_term(signum, frame):
        raise Done(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_term)
    try:
        with Lock():
            Zfs()  # the pool exists from the first call on
        code = TOOLS[tool](args)
    except Fail as e:
        if e.message:
            try:
                stderr(e.message)
            except OSError:
                pass
        code = e.code
    except Done as e:
        code = e.code
    except BrokenPipeError:
        code = 1
    except Exception:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except OSError:
            pass
    try:
        record_call(tool, args, code)
    except OSError:
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
