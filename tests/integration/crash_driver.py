#!/usr/bin/env python3
"""crash_driver.py: the request driver and the model of test_crash.sh.

test_crash.sh kills chsmd (SIGKILL) at random moments; between two kills
this driver sends mixed mutating requests (create, start, stop, token,
export, import, reset, delete, and key generation in the VSMs through the
VSM protocol), and after each restart it checks the CHSM against a model of
what was answered:

- every answered change is there; an answered task exists and ends
  succeeded or failed (a task cut by the crash: failed, 5000, "interrupted
  by a CHSM restart"), never stays pending or running;
- the one request that was in flight at the crash (unanswered) either
  happened or not, and nothing else: found through its task row, its
  token id or its key row, then judged like an answered one;
- every VSM is in a stable state (stopped, running, fault) equal to what
  its operations imply; token ids, key sets and key counts are as modelled;
  no key or token row belongs to a VSM that does not exist; no task is
  pending or running once recovery settled; the state's tmp folder is
  empty; every image in the upload folder is complete (its SM3 is the one
  the export answered, or chsm-image inspect accepts it);
- keys sign: each key is used through the VSM protocol and the signature
  is verified by the openssl CLI against the public key the VSM gave when
  the key was made (before the crash).

The model is a JSON file that the subcommands read and write in turn:

  crash_driver.py init  MODEL --seed S --ports P,P,... --upload DIR
  crash_driver.py plan  MODEL --min-requests N      one "KILL_AFTER DELAY_MS" per round
  crash_driver.py run   MODEL CONN --round R --kill-after K --marker FILE --state-dir DIR
  crash_driver.py check MODEL CONN --state-dir DIR --chsm-image BIN
  crash_driver.py final MODEL CONN                   start every VSM, sign with every key
  crash_driver.py stats MODEL
  crash_driver.py vsmd-loop LOG --port P --token-id ID --token-file F --first I
                  --kill-after K --marker FILE      keys made until the VSM dies
  crash_driver.py vsmd-check LOG --port P --token-id ID --token-file F --first I

CONN is --base URL --cacert FILE --key PEM --key-id FP. Random choices
come from the seed (and the round), so a failure can be replayed with
CRASH_SEED; the moment of each kill is the K-th mutating request of the
round plus DELAY_MS. check and final print "ok - ..." / "not ok - ..."
lines and exit 1 on any failure.
"""
import argparse
import base64
import copy
import glob
import hashlib
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from platform_client import Platform  # noqa: E402
import vsmp_client as V  # noqa: E402

API = "/gmt0088/v1"
MAX_KEYS = 24
STABLE = ("stopped", "running", "fault")
INTERRUPTED = "interrupted by a CHSM restart"
CONN_ERRORS = (OSError, EOFError, http.client.HTTPException)


def now_ms():
    return int(time.time() * 1000)


def load(path):
    with open(path) as f:
        return json.load(f)


def touch(path):
    if not os.path.exists(path):
        open(path, "w").close()


def save(path, model):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(model, f)
    os.replace(tmp, path)


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def ok(self, cond, desc, quiet=False):
        if cond:
            self.passed += 1
            if not quiet:
                print("ok - " + desc, flush=True)
        else:
            self.failed += 1
            print("not ok - " + desc, flush=True)
        return cond

    def end(self):
        return 0 if self.failed == 0 else 1


def new_vsm():
    return {"exists": False, "state": None, "token": None, "keys": {}}


def platform(a):
    return Platform(a.base, a.cacert, a.key, a.key_id)


# ---- init, plan ----

def cmd_init(a):
    ports = [int(p) for p in a.ports.split(",")]
    model = {"seed": a.seed, "upload": a.upload, "round": 0, "tokens": {}, "images": {},
             "ports": {"c%d" % (i + 1): p for i, p in enumerate(ports)},
             "vsms": {"c%d" % (i + 1): new_vsm() for i in range(len(ports))},
             "journal": [], "counts": {}, "answered": 0, "unanswered": 0,
             "happened": 0, "signed": 0}
    save(a.model, model)


def cmd_plan(a):
    model = load(a.model)
    rng = random.Random("plan:%s" % model["seed"])
    total, rounds = 0, []
    while total < a.min_requests:
        # One round in six is killed at once, during the recovery of the
        # restart before it; the others DELAY_MS after the K-th mutating
        # request (1..30) was sent: inside the request, inside its task, or
        # in what follows.
        k = 0 if rng.random() < 1 / 6 else rng.randint(1, 30)
        rounds.append((k, rng.choice([0, 0, 2, 5, 10, 20, 40, 80, 150])))
        total += k
    for k, d in rounds:
        print(k, d)


# ---- run: the requests of one round ----

class Round:
    def __init__(self, a, model):
        self.a, self.model = a, model
        self.p = platform(a)
        self.rng = random.Random("round:%s:%d" % (model["seed"], a.round))
        self.view = copy.deepcopy(model["vsms"])   # what the driver believes now
        self.inflight = {}                         # vsm -> journal entry with a task
        self.journal = []
        self.mutating = 0
        self.arm = False     # the next request sent creates the marker
        # In one round in three the marked request is held: once it is sent
        # the driver waits until its change is in the database, lets the
        # kill come and drops the connection without reading the answer (an
        # answer lost on the way), so that the model meets requests that
        # happened without an answer.
        self.hold = self.rng.random() < 1 / 3
        self.effect_seen = None   # () -> bool: the marked request's change is stored

    def sent(self):
        if not self.arm:
            return
        self.arm = False
        if not (self.hold and self.effect_seen):
            touch(self.a.marker)
            return
        for _ in range(300):
            if self.effect_seen():
                break
            time.sleep(0.02)
        touch(self.a.marker)
        raise ConnectionAbortedError("the answer is dropped unread")

    def db_has(self, sql, *args):
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.a.state_dir, "chsm.db"),
                              uri=True, timeout=30)
        try:
            return bool(con.execute(sql, args).fetchall())
        finally:
            con.close()

    def watch(self, e):
        """Sets effect_seen for entry e (just created, about to be sent)."""
        op, vid, t = e["op"], e["vsm"], e["t"]
        if op == "keygen":
            self.effect_seen = lambda: self.db_has(
                "SELECT 1 FROM vsm_keys WHERE vsm_id=? AND type='sign' AND idx=?", vid, e["index"])
        elif op == "token":
            self.effect_seen = lambda: self.db_has(
                "SELECT 1 FROM vsm_tokens WHERE vsm_id=? AND token_id=?", vid, e["token"]["id"])
        else:
            name = {"export": "vsm.image.export", "import": "vsm.image.import"}.get(op, "vsm." + op)
            self.effect_seen = lambda: self.db_has(
                "SELECT 1 FROM tasks WHERE operation=? AND target=? AND created_at>=?",
                name, vid, t - 5)

    def entry(self, op, vsm, **kw):
        e = {"op": op, "vsm": vsm, "t": now_ms(), "answered": False,
             "before": copy.deepcopy(self.view[vsm])}
        e.update(kw)
        self.journal.append(e)
        self.watch(e)
        return e

    def candidates(self):
        out = []
        for vid, v in self.view.items():
            if vid in self.inflight:
                continue
            if not v["exists"]:
                out += [("create", vid)] * 3
                continue
            s = v["state"]
            if s in ("stopped", "fault"):
                out += [("start", vid)] * 3
            if s in ("running", "fault"):
                out += [("stop", vid)] * 2
            if s in ("stopped", "running"):
                out += [("token", vid)] * 2
            out += [("export", vid)] * 2
            if s == "stopped" and not v["keys"] and self.model["images"]:
                out += [("import", vid)] * 3
            out += [("reset", vid), ("delete", vid)]
            if s == "running" and v["token"] and len(v["keys"]) < MAX_KEYS:
                out += [("keygen", vid)] * 6
        return out

    def new_token(self, vid):
        n = len(self.model["tokens"]) + 1
        tid = "%s-t%d" % (vid, n)
        secret = base64.b64encode(os.urandom(self.rng.randint(16, 48))).decode()
        self.model["tokens"][tid] = secret
        return {"id": tid, "secret": secret}

    def poll(self):
        for vid, e in list(self.inflight.items()):
            st, env = self.p.request("GET", "%s/tasks/%s" % (API, e["task"]))
            d = (env or {}).get("data") or {}
            if st != 200 or d.get("state") not in ("succeeded", "failed"):
                continue
            e["final"] = {k: d.get(k) for k in ("state", "code", "message", "result")}
            e["polled"] = True
            del self.inflight[vid]
            self.view[vid] = effect(e, self.model)[0]
            if e["final"]["state"] == "failed":
                e["unexpected"] = True
            elif e["op"] == "export":
                add_image(self.model, e)

    def send(self, op, vid):
        v = self.view[vid]
        port = self.model["ports"][vid]
        if op == "keygen":
            idx = min(set(range(1, MAX_KEYS + 1)) - {int(i) for i in v["keys"]})
            e = self.entry(op, vid, index=idx)
            c = V.Vsmp("127.0.0.1", port, v["token"]["id"].encode(),
                       base64.b64decode(v["token"]["secret"]))
            c.on_sent = self.sent
            try:
                point = c.keygen(V.SIGN, idx)
            finally:
                c.close()
            e["answered"], e["code"] = True, 0
            v["keys"][str(idx)] = point.hex()
            return
        path, method, body = "%s/vsms/%s" % (API, vid), "POST", None
        if op == "create":
            tok = self.new_token(vid)
            start = self.rng.random() < 0.5
            body = {"vsmId": vid, "name": "crash " + vid, "start": start,
                    "network": {"ipAddress": "127.0.0.1", "prefixLength": 8, "port": port},
                    "token": {"tokenId": tok["id"], "secret": tok["secret"]},
                    "resources": {"maxKeys": MAX_KEYS, "maxSessions": 16, "memoryMiB": 16}}
            path = API + "/vsms"
            e = self.entry(op, vid, token=tok, start=start)
        elif op == "token":
            tok = self.new_token(vid)
            method, path = "PUT", path + "/token"
            body = {"tokenId": tok["id"], "secret": tok["secret"]}
            e = self.entry(op, vid, token=tok)
        elif op == "delete":
            method = "DELETE"
            e = self.entry(op, vid)
        elif op == "import":
            img_id = self.rng.choice(sorted(self.model["images"]))
            img = self.model["images"][img_id]
            path += "/image/import"
            body = {"url": img["url"], "sm3": img["sm3"]}
            e = self.entry(op, vid, image=img_id)
        elif op == "export":
            path += "/image/export"
            e = self.entry(op, vid)
        else:                                   # start, stop, reset
            path += "/" + op
            e = self.entry(op, vid)
        st, env = self.p.request(method, path, body, on_sent=self.sent)
        e["answered"] = True
        e["status"], e["code"] = st, (env or {}).get("code")
        if e["code"] != 0:
            return
        if op == "token":
            v["token"] = e["token"]
            return
        e["task"] = env["data"]["taskId"]
        v["state"] = "pending-task"
        self.inflight[vid] = e

    def go(self):
        a = self.a
        if a.kill_after == 0:      # killed during the recovery of the restart
            touch(a.marker)
        try:
            while self.mutating <= a.kill_after + 400:
                self.poll()
                cands = self.candidates()
                if not cands:
                    time.sleep(0.02)
                    continue
                op, vid = self.rng.choice(cands)
                self.arm = self.mutating == a.kill_after and a.kill_after > 0
                self.mutating += 1
                try:
                    self.send(op, vid)
                except V.SdrError as err:
                    self.journal[-1].update(answered=True, code=str(err), unexpected=True)
            print("# round %d: the kill did not come" % a.round, file=sys.stderr)
            return 3
        except CONN_ERRORS:
            return 0
        finally:
            touch(a.marker)
            self.model["journal"] = self.journal
            self.model["view"] = self.view
            save(a.model, self.model)


def cmd_run(a):
    model = load(a.model)
    model["round"] = a.round
    return Round(a, model).go()


# ---- what an operation does ----

def add_image(model, e):
    """Records the image of a succeeded export: its keys and token are the
    VSM's when the export was asked (no other request touched it since)."""
    res = e["final"]["result"]
    model["images"][res["imageId"]] = {
        "url": res["url"], "sm3": res["sm3"], "keyCount": res["keyCount"],
        "keys": e["before"]["keys"], "token": e["before"]["token"]}


def effect(e, model):
    """The possible VSMs after entry e, given its outcome (e["final"] for a
    task, e["answered"] and e["code"] otherwise). A list of alternatives,
    the most likely first."""
    b = copy.deepcopy(e["before"])
    op, fin = e["op"], e.get("final")
    ok = fin is not None and fin["state"] == "succeeded"
    cut = fin is not None and fin["state"] == "failed" and fin.get("message") == INTERRUPTED
    if op == "create":
        b.update(exists=True, token=e["token"], keys={})
        b["state"] = ("running" if e["start"] else "stopped") if ok else "fault"
        return [b]
    if op == "start":
        b["state"] = "running" if ok else "fault"
        return [b]
    if op == "stop":
        b["state"] = "stopped" if ok or cut else "fault"
        return [b]
    if op == "export":
        return [b]
    if op == "reset":
        z = dict(b, keys={}, token=None, state="stopped" if ok else "fault")
        if ok:
            return [z]
        return [z, dict(b, state="fault")]
    if op == "delete":
        if ok:
            return [new_vsm()]
        return [new_vsm(), dict(b, state="fault")]
    if op == "import":
        img = model["images"][e["image"]]
        full = dict(b, keys=copy.deepcopy(img["keys"]), token=img["token"], state="stopped")
        if ok:
            return [full]
        return [dict(b, state="stopped"), full] if cut else [dict(b, state="stopped")]
    raise ValueError(op)


# ---- check: after each restart ----

class Checker:
    def __init__(self, a, model, report):
        self.a, self.model, self.r = a, model, report
        self.p = platform(a)
        self.db_path = os.path.join(a.state_dir or "", "chsm.db")

    def db(self, sql, *args):
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def get(self, target):
        st, env = self.p.request("GET", target)
        return st, env

    def settle(self):
        """Waits (at most 90 s) until no task is pending or running and every
        VSM is in a stable state."""
        end = time.time() + 90
        while True:
            busy = self.db("SELECT id, operation, target, state FROM tasks "
                           "WHERE state IN ('pending','running')")
            st, env = self.get(API + "/vsms")
            moving = [(v["vsmId"], v["state"]) for v in env["data"]["vsms"]
                      if v["state"] not in STABLE]
            if not busy and not moving:
                return True
            if time.time() > end:
                self.r.ok(False, "round %d: recovery settles (tasks %s, VSMs %s)"
                          % (self.model["round"], busy, moving))
                return False
            time.sleep(0.1)

    def resolve(self, journal):
        """Fills e["final"] for answered tasks and decides whether the
        unanswered request happened (e["happened"])."""
        rnd = self.model["round"]
        known = {e["task"] for e in journal if e.get("task")}
        for e in journal:
            if e.get("task"):
                st, env = self.get("%s/tasks/%s" % (API, e["task"]))
                d = (env or {}).get("data") or {}
                self.r.ok(st == 200 and d.get("state") in ("succeeded", "failed"),
                          "round %d: answered task %s (%s %s) is there and ended (%s %s)"
                          % (rnd, e["task"], e["op"], e["vsm"], st, d.get("state")), quiet=True)
                e["final"] = {k: d.get(k) for k in ("state", "code", "message", "result")}
                if d.get("state") == "failed" and d.get("message") != INTERRUPTED:
                    e["unexpected"] = True
        for e in journal:
            if e["answered"]:
                continue
            op, vid = e["op"], e["vsm"]
            if op == "keygen":
                rows = self.db("SELECT 1 FROM vsm_keys WHERE vsm_id=? AND type='sign' AND idx=?",
                               vid, e["index"])
                e["happened"] = bool(rows)
            elif op == "token":
                st, env = self.get("%s/vsms/%s" % (API, vid))
                tok = ((env or {}).get("data") or {}).get("token") or {}
                e["happened"] = tok.get("tokenId") == e["token"]["id"]
            else:
                name = {"export": "vsm.image.export", "import": "vsm.image.import"}.get(op, "vsm." + op)
                rows = self.db("SELECT id, state, code, message, result FROM tasks WHERE "
                               "operation=? AND target=? AND created_at>=?", name, vid, e["t"] - 5)
                rows = [r for r in rows if r[0] not in known]
                e["happened"] = bool(rows)
                if rows:
                    tid, state, code, msg, result = rows[0]
                    e["task"] = tid
                    e["final"] = {"state": state, "code": code, "message": msg,
                                  "result": json.loads(result) if result else {}}
                    if state == "failed" and msg != INTERRUPTED:
                        e["unexpected"] = True
            self.model["happened"] += 1 if e["happened"] else 0
            print("# round %d: the %s of %s in flight at the crash %s" % (
                rnd, op, vid, "happened" if e["happened"] else "did not happen"))

    def expected(self, journal, view):
        """{vsm: [alternatives]} after the round."""
        exp = {vid: [copy.deepcopy(v)] for vid, v in view.items()}
        for e in journal:
            vid = e["vsm"]
            # The driver asks only what the model allows: a refusal or a
            # failed task (other than one cut by the crash) is a failure.
            refused = e["answered"] and e.get("code") != 0
            if e.get("unexpected") or refused:
                self.r.ok(False, "round %d: %s %s: unexpected answer %s %s" % (
                    self.model["round"], e["op"], vid, e.get("code"), e.get("final")))
            if refused:
                continue                             # nothing changed
            if e.get("polled") or (e["answered"] and e["op"] in ("keygen", "token")):
                continue                             # in the view already
            if e["op"] == "export" and e.get("final", {}).get("state") == "succeeded":
                add_image(self.model, e)
            if not e["answered"]:
                if not e["happened"]:
                    exp[vid] = [copy.deepcopy(e["before"])]
                    continue
                if e["op"] == "keygen":
                    b = copy.deepcopy(e["before"])
                    b["keys"][str(e["index"])] = None   # made; its point was never answered
                    exp[vid] = [b]
                    continue
                if e["op"] == "token":
                    exp[vid] = [dict(copy.deepcopy(e["before"]), token=e["token"])]
                    continue
            if "final" in e:
                exp[vid] = effect(e, self.model)
        return exp

    def actual(self):
        st, env = self.get(API + "/vsms")
        out = {}
        keyrows = self.db("SELECT vsm_id, type, idx FROM vsm_keys")
        for v in env["data"]["vsms"]:
            tok = v.get("token") or {}
            out[v["vsmId"]] = {
                "state": v["state"], "token": tok.get("tokenId") if tok.get("configured") else None,
                "keyCount": v["keyCount"],
                "keys": sorted(i for vid, t, i in keyrows if vid == v["vsmId"] and t == "sign"),
                "otherKeys": [(t, i) for vid, t, i in keyrows if vid == v["vsmId"] and t != "sign"]}
        return out

    @staticmethod
    def matches(alt, act):
        if not alt["exists"]:
            return act is None
        if act is None:
            return False
        return (alt["state"] == act["state"]
                and (alt["token"] or {}).get("id") == act["token"]
                and sorted(int(i) for i in alt["keys"]) == act["keys"]
                and act["keyCount"] == len(act["keys"]) and not act["otherKeys"])

    def compare(self, exp, act):
        rnd = self.model["round"]
        for vid in sorted(act):
            self.r.ok(vid in exp, "round %d: VSM %s is one the driver made" % (rnd, vid), quiet=True)
        new_vsms = {}
        for vid, alts in sorted(exp.items()):
            a = act.get(vid)
            hit = next((alt for alt in alts if self.matches(alt, a)), None)
            want = "; ".join("absent" if not x["exists"] else "%s token=%s keys=%s" % (
                x["state"], (x["token"] or {}).get("id"), sorted(int(i) for i in x["keys"]))
                for x in alts)
            self.r.ok(hit is not None, "round %d: %s is as modelled (want %s; got %s)"
                      % (rnd, vid, want, a), quiet=True)
            new_vsms[vid] = copy.deepcopy(hit) if hit is not None else self.adopt(a)
        return new_vsms

    def adopt(self, act):
        """After a mismatch (already reported), continue from what is."""
        if act is None:
            return new_vsm()
        tok = {"id": act["token"], "secret": self.model["tokens"].get(act["token"])} \
            if act["token"] else None
        return {"exists": True, "state": act["state"], "token": tok,
                "keys": {str(i): None for i in act["keys"]}}

    def integrity(self):
        rnd = self.model["round"]
        orphans = self.db("SELECT vsm_id, type, idx FROM vsm_keys WHERE vsm_id NOT IN "
                          "(SELECT id FROM vsms)") + \
            self.db("SELECT vsm_id, 'token', 0 FROM vsm_tokens WHERE vsm_id NOT IN (SELECT id FROM vsms)")
        self.r.ok(not orphans, "round %d: no key or token of a VSM that does not exist (%s)"
                  % (rnd, orphans), quiet=True)
        running = self.db("SELECT id, operation FROM tasks WHERE state IN ('pending','running')")
        self.r.ok(not running, "round %d: no task pending or running (%s)" % (rnd, running),
                  quiet=True)
        left = os.listdir(os.path.join(self.a.state_dir, "tmp")) \
            if os.path.isdir(os.path.join(self.a.state_dir, "tmp")) else []
        self.r.ok(not left, "round %d: nothing left in the state's tmp folder (%s)" % (rnd, left),
                  quiet=True)
        for path in sorted(glob.glob(os.path.join(self.model["upload"], "*.img"))):
            img_id = os.path.basename(path)[:-4]
            with open(path, "rb") as f:
                digest = hashlib.new("sm3", f.read()).hexdigest()
            img = self.model["images"].get(img_id)
            if img:
                self.r.ok(digest == img["sm3"], "round %d: image %s has the SM3 its export answered"
                          % (rnd, img_id), quiet=True)
            else:
                rc = subprocess.run([self.a.chsm_image, "inspect", path], capture_output=True)
                self.r.ok(rc.returncode == 0, "round %d: image %s of an interrupted export is "
                          "complete (chsm-image inspect: %s)" % (rnd, img_id,
                                                                 rc.stderr.decode()[:200]),
                          quiet=True)
        for img_id, img in self.model["images"].items():
            self.r.ok(os.path.exists(img["url"][len("file://"):]),
                      "round %d: image %s of a succeeded export is there" % (rnd, img_id),
                      quiet=True)

    def sign_keys(self, vsms, which):
        """Signs with the keys of running VSMs; which(vid, idx) picks them.
        Keys whose point was never answered get it from the VSM first."""
        rnd, n = self.model["round"], 0
        for vid, v in sorted(vsms.items()):
            if not v["exists"] or v["state"] != "running" or not v["keys"]:
                continue
            if not v["token"] or not v["token"].get("secret"):
                self.r.ok(False, "round %s: %s holds keys but no known token" % (rnd, vid))
                continue
            picked = [i for i in sorted(v["keys"], key=int) if which(vid, i)]
            if not picked:
                continue
            try:
                c = V.Vsmp("127.0.0.1", self.model["ports"][vid], v["token"]["id"].encode(),
                           base64.b64decode(v["token"]["secret"]))
            except (V.SdrError, *CONN_ERRORS) as err:
                self.r.ok(False, "round %s: a session with %s (%s)" % (rnd, vid, err))
                continue
            try:
                listed = sorted(i for t, i in c.key_list() if t == V.SIGN)
                self.r.ok(listed == sorted(int(i) for i in v["keys"]),
                          "round %s: %s lists the modelled keys (%s)" % (rnd, vid, listed),
                          quiet=True)
                for i in picked:
                    if v["keys"][i] is None:
                        v["keys"][i] = c.public(int(i)).hex()
                    good = V.sign_and_verify(c, int(i), bytes.fromhex(v["keys"][i]))
                    n += 1
                    self.r.ok(good, "round %s: key %s of %s signs (openssl verifies)"
                              % (rnd, i, vid), quiet=True)
            except (V.SdrError, *CONN_ERRORS) as err:
                self.r.ok(False, "round %s: signing with %s's keys: %s" % (rnd, vid, err))
            finally:
                c.close()
        self.model["signed"] += n
        return n


def cmd_check(a):
    model, r = load(a.model), Report()
    c = Checker(a, model, r)
    journal, view = model.get("journal", []), model.get("view", model["vsms"])
    before = r.failed
    if c.settle():
        c.resolve(journal)
        exp = c.expected(journal, view)
        vsms = c.compare(exp, c.actual())
        c.integrity()
        fresh = {(e["vsm"], str(e["index"])) for e in journal if e["op"] == "keygen"}
        fresh |= {(e["vsm"], i) for e in journal if e["op"] == "import"
                  for i in vsms.get(e["vsm"], {}).get("keys", {})}
        rng = random.Random("check:%s:%d" % (model["seed"], model["round"]))
        sample = {vid: rng.choice(sorted(v["keys"])) for vid, v in vsms.items() if v["keys"]}
        n = c.sign_keys(vsms, lambda vid, i: (vid, i) in fresh or sample.get(vid) == i)
        model["vsms"] = vsms
        ops = [e["op"] for e in journal]
        for op in ops:
            model["counts"][op] = model["counts"].get(op, 0) + 1
        model["answered"] += sum(1 for e in journal if e["answered"])
        model["unanswered"] += sum(1 for e in journal if not e["answered"])
        states = ",".join("%s:%s" % (k, v["state"] if v["exists"] else "-")
                          for k, v in sorted(vsms.items()))
        r.ok(r.failed == before, "round %d: %d requests (%d answered), the CHSM is as modelled "
             "[%s], %d keys signed" % (model["round"], len(journal),
                                       sum(1 for e in journal if e["answered"]), states, n))
    model.pop("view", None)
    model["journal"] = []
    save(a.model, model)
    return r.end()


def cmd_final(a):
    """Starts every VSM that is not running and signs with every key."""
    model, r = load(a.model), Report()
    p = platform(a)
    for vid, v in sorted(model["vsms"].items()):
        if v["exists"] and v["state"] != "running" and v["keys"]:
            st, env = p.request("POST", "%s/vsms/%s/start" % (API, vid))
            ok = st == 202
            if ok:
                tid = env["data"]["taskId"]
                for _ in range(600):
                    st, env = p.request("GET", "%s/tasks/%s" % (API, tid))
                    if env["data"]["state"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.1)
                ok = env["data"]["state"] == "succeeded"
            r.ok(ok, "final: %s (%s) starts by request" % (vid, v["state"]))
            if ok:
                v["state"] = "running"
    model["round"] = "final"
    c = Checker(a, model, r)
    n = c.sign_keys(model["vsms"], lambda vid, i: True)
    total = sum(len(v["keys"]) for v in model["vsms"].values() if v["exists"])
    r.ok(n == total and r.failed == 0, "final: every one of the %d keys signs, checked by openssl"
         % total)
    save(a.model, model)
    return r.end()


def cmd_stats(a):
    m = load(a.model)
    mut = m["answered"] + m["unanswered"]
    print("%d mutating requests (%d answered, %d in flight at a kill: %d happened); by kind: %s; "
          "%d images; %d signatures checked" % (
              mut, m["answered"], m["unanswered"], m["happened"],
              ", ".join("%s %d" % kv for kv in sorted(m["counts"].items())),
              len(m["images"]), m["signed"]))
    print("MUTATING=%d" % mut)


# ---- a VSM process killed during key generation ----

def vsm_conn(a, src=None):
    with open(a.token_file) as f:
        secret = base64.b64decode(f.read().strip())
    return V.Vsmp("127.0.0.1", a.port, a.token_id.encode(), secret, src=src)


def cmd_vsmd_loop(a):
    """Generates signing keys at a.first, a.first + 1, ... on one session
    until the connection breaks; appends "sent IDX" before each request and
    "made IDX POINT" after each answer to a.model (a log, not a model);
    creates a.marker after a.kill_after keys."""
    c = vsm_conn(a)
    log = open(a.model, "a")
    idx, made = a.first, 0

    def sent():
        if made == a.kill_after:
            touch(a.marker)
    c.on_sent = sent
    try:
        while idx < a.first + 1000:
            log.write("sent %d\n" % idx)
            log.flush()
            point = c.keygen(V.SIGN, idx)
            log.write("made %d %s\n" % (idx, point.hex()))
            log.flush()
            idx, made = idx + 1, made + 1
        print("# the VSM was not killed", file=sys.stderr)
        return 3
    except CONN_ERRORS:
        return 0
    finally:
        touch(a.marker)
        log.close()
        c.close()


def cmd_vsmd_check(a):
    """After the VSM restarted: its keys are exactly those answered, plus
    perhaps the one in flight at the kill; every one of them signs."""
    r = Report()
    made, sent = {}, []
    with open(a.model) as f:
        for line in f:
            w = line.split()
            if w[0] == "made":
                made[int(w[1])] = bytes.fromhex(w[2])
            else:
                sent.append(int(w[1]))
    inflight = [i for i in sent if i not in made]
    c = vsm_conn(a)
    try:
        listed = sorted(i for t, i in c.key_list() if t == V.SIGN)
        extra = sorted(set(listed) - set(made))
        r.ok(set(made) <= set(listed), "every answered key is there (%d answered, %d listed)"
             % (len(made), len(listed)))
        r.ok(set(extra) <= set(inflight), "no key beyond those answered but the one in flight "
             "(in flight %s, extra %s)" % (inflight, extra))
        fresh = [i for i in sorted(made) if i >= a.first]
        bad = [i for i in fresh if not V.sign_and_verify(c, i, made[i])]
        r.ok(not bad, "every key answered since the last kill signs, verified by openssl "
             "against the point answered at its generation (%d keys; failing %s)"
             % (len(fresh), bad))
        for i in [i for i in extra if i >= a.first]:
            r.ok(V.sign_and_verify(c, i, c.public(i)),
                 "key %d, in flight at the kill and kept, is whole: it signs" % i)
    except (V.SdrError, *CONN_ERRORS) as err:
        r.ok(False, "the VSM's keys after the kill: %s" % err)
    finally:
        c.close()
    return r.end()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("model")
    for opt in ("--base", "--cacert", "--key", "--key-id", "--marker", "--ports", "--upload",
                "--state-dir", "--chsm-image", "--token-id", "--token-file"):
        ap.add_argument(opt)
    for opt in ("--seed", "--round", "--kill-after", "--min-requests", "--port", "--first"):
        ap.add_argument(opt, type=int)
    a = ap.parse_args()
    return {"init": cmd_init, "plan": cmd_plan, "run": cmd_run, "check": cmd_check,
            "final": cmd_final, "stats": cmd_stats,
            "vsmd-loop": cmd_vsmd_loop, "vsmd-check": cmd_vsmd_check}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
