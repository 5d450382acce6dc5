"""``registry audit verify``: the log in git, its anchors, the DB copy and the DB's state agree.

What is checked (the threat model is in the README):
- the log committed at git HEAD (``audit/events.jsonl``) is a hash chain from seq 1;
- every commit's anchor (``audit-seq``/``audit-head``) names an event of that chain with that
  hash, and every event is anchored by a commit (an event edited, deleted or reordered in the
  file breaks the chain or an older commit's anchor, even when all later hashes are redone);
- the work-tree file is the committed one (an uncommitted line is an interrupted write);
- the DB's events are exactly the log's (a forged, edited or deleted DB event is reported);
- each version's status and each alias in the DB are what replaying the log gives;
- each version's manifest names, as ``audit_head``, the event that created it;
- with ``SYNTHREG_AUDIT_KEY_FILE`` set, every event from the first signed one on is signed
  with that key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from synthreg.errors import VerificationError
from synthreg.integrations import git
from synthreg.registry.audit import (
    GENESIS,
    KEY_ENV,
    LOG_FILE,
    LoggedEvent,
    event_hash,
    head_hash,
    parse_log,
    read_key,
    signature,
)
from synthreg.registry.store import Alias, AuditEvent, Dataset, Version, read_session
from synthreg.registry.workspace import Workspace

__all__ = ["GovState", "committed_log", "git_anchors", "replay", "verify_audit"]

_MAKES_VERSION = ("create", "rollback", "disable")
_STATUS_OF = {"approve": "approved", "reject": "rejected"}


@dataclass
class GovState:
    """What the log says the governance state is: statuses, aliases, usages, diffs."""

    statuses: dict[tuple[str, int], str] = field(default_factory=dict)
    aliases: dict[tuple[str, str], int] = field(default_factory=dict)
    creators: dict[tuple[str, int], AuditEvent] = field(default_factory=dict)
    usages: list[AuditEvent] = field(default_factory=list)
    diffs: list[AuditEvent] = field(default_factory=list)


def replay(events: list[AuditEvent]) -> GovState:
    """Fold the log, oldest first, into the state it leaves."""
    state = GovState()
    for e in events:
        d = e.details or {}
        if e.version is None:
            continue
        key = (e.dataset, e.version)
        if e.action in _MAKES_VERSION:
            state.creators[key] = e
            state.statuses[key] = d.get("status", "")
            if d.get("status") == "approved":
                state.aliases[(e.dataset, "current")] = e.version
        elif e.action in _STATUS_OF:
            state.statuses[key] = _STATUS_OF[e.action]
            if d.get("current") is None:
                state.aliases.pop((e.dataset, "current"), None)
            else:
                state.aliases[(e.dataset, "current")] = int(d["current"])
        elif e.action == "alias":
            state.aliases[(e.dataset, str(d.get("alias")))] = e.version
        elif e.action == "use":
            state.usages.append(e)
        elif e.action == "diff":
            state.diffs.append(e)
    return state


def _committed_text(root: Path) -> str | None:
    """The log file's text at git HEAD (None when HEAD has no log: a workspace from before it)."""
    if not git.run(root, "ls-tree", "--name-only", "HEAD", "--", LOG_FILE):
        return None
    return git.run(root, "show", f"HEAD:{LOG_FILE}", strip=False)


def committed_log(root: Path) -> list[LoggedEvent] | None:
    """The events of the log at git HEAD (None when HEAD has no log)."""
    text = _committed_text(root)
    return None if text is None else parse_log(text, f"{LOG_FILE} at git HEAD")


def git_anchors(root: Path) -> list[tuple[str, int | None, str]]:
    """(commit, seq or None for an old anchor, hash) of every commit that anchors an event.
    A git that cannot be read is an error, never "no anchors"."""
    out = git.run(root, "log", "--format=%H%x00%B%x01")
    anchors = []
    for record in out.split("\x01"):
        if "\x00" not in record:
            continue
        sha, body = record.strip().split("\x00", 1)
        seq, head = None, None
        for line in body.splitlines():
            if line.startswith("audit-seq: "):
                seq = int(line.split()[1])
            elif line.startswith("audit-head: "):
                head = line.split()[1]
        if head:
            anchors.append((sha, seq, head))
    return anchors


def _chain(logged: list[LoggedEvent], key: bytes | None) -> tuple[list[str], int]:
    problems, prev, signed = [], GENESIS, 0
    for i, item in enumerate(logged, start=1):
        e = item.event
        if e.seq != i or e.prev_hash != prev or event_hash(e) != e.hash:
            problems.append(
                f"audit event seq {e.seq} (line {i} of {LOG_FILE}) was edited, deleted or reordered: "
                "its hash or link to the previous event does not check out"
            )
            break
        prev = e.hash
        if item.sig:
            signed += 1
            if key is not None and item.sig != signature(key, e.hash):
                problems.append(f"audit event seq {e.seq} has a signature the key does not make: forged")
        elif key is not None and signed:
            problems.append(f"audit event seq {e.seq} is not signed, though earlier events are: forged")
    return problems, signed


def _anchor_problems(anchors: list[tuple[str, int | None, str]], logged: list[LoggedEvent]) -> list[str]:
    by_seq = {int(item.event.seq or 0): item.event.hash for item in logged}
    seq_of = {h: s for s, h in by_seq.items()}
    problems, anchored = [], set()
    for sha, seq, head in anchors:
        at = seq if seq is not None else seq_of.get(head)
        if at is None or by_seq.get(at) != head:
            problems.append(
                f"git commit {sha[:12]} anchors event {seq if seq is not None else '?'} with hash "
                f"{head[:16]}, which the log does not hold: events were edited or deleted"
            )
        else:
            anchored.add(at)
    missing = sorted(set(by_seq) - anchored)
    if missing:
        problems.append(
            f"{len(missing)} events are anchored by no git commit (e.g. seq {missing[0]}): "
            "they were added to the log behind synthreg's back"
        )
    return problems


def _db_problems(session: Session, logged: list[LoggedEvent]) -> list[str]:
    rows = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)))  # type: ignore[arg-type]
    in_log = {int(item.event.seq or 0): item.event.hash for item in logged}
    problems = []
    for row in rows:
        want = in_log.get(int(row.seq or 0))
        if want is None:
            problems.append(
                f"the DB holds audit event seq {row.seq}, which the log in git does not: it was added "
                "to the DB behind synthreg's back (or a write was interrupted: run 'registry doctor')"
            )
        elif row.hash != want or event_hash(row) != want:
            problems.append(f"audit event seq {row.seq} in the DB differs from the log in git: it was edited")
    lost = sorted(set(in_log) - {int(r.seq or 0) for r in rows})
    if lost:
        problems.append(
            f"{len(lost)} events of the log are missing from the DB (e.g. seq {lost[0]}): deleted, or the "
            "DB was replaced; 'registry doctor --rebuild' restores them"
        )
    return problems


def _state_problems(session: Session, state: GovState) -> list[str]:
    problems = []
    names = {d.id: d.name for d in session.exec(select(Dataset))}
    for v in session.exec(select(Version)):
        name = names[v.dataset_id]
        want = state.statuses.get((name, v.number))
        if want is None:
            problems.append(f"{name}@v{v.number} is in the DB, but no audit event created it")
        elif want != v.status:
            problems.append(
                f"{name}@v{v.number} is {v.status} in the DB, but the audit log says {want}: "
                "the status was changed outside synthreg"
            )
    db_aliases = {(names[a.dataset_id], a.name): a.version for a in session.exec(select(Alias))}
    for alias in sorted(set(db_aliases) | set(state.aliases)):
        have, should = db_aliases.get(alias), state.aliases.get(alias)
        if have != should:
            problems.append(
                f"alias {alias[0]}@{alias[1]} points at {_v(have)} in the DB, but the audit log says "
                f"{_v(should)}: it was moved outside synthreg"
            )
    return problems


def _v(number: int | None) -> str:
    return "nothing" if number is None else f"v{number}"


def _manifest_problems(root: Path, state: GovState) -> list[str]:
    problems = []
    for path in sorted((root / "data").glob("*/v*/manifest.json")):
        m = json.loads(path.read_text(encoding="utf-8"))
        creator = state.creators.get((m.get("dataset"), m.get("version")))
        if creator is not None and m.get("audit_head") != creator.hash:
            problems.append(
                f"{path.parent.relative_to(root)}/manifest.json names audit head "
                f"{str(m.get('audit_head'))[:16]}, not the event that created the version"
            )
    return problems


def verify_audit(ws: Workspace) -> Any:
    """Every check of the module docstring; raises VerificationError listing what failed."""
    from synthreg.registry.verify import VerifyResult

    root = ws.root
    with ws.lock(), read_session(ws.engine) as session:
        committed = _committed_text(root)
        if committed is None:
            raise VerificationError(
                f"no audit log is committed in git ({LOG_FILE}): this workspace predates it; run "
                "'registry doctor --repair' to export the DB's events to git, then verify again",
                result=VerifyResult("audit", False, {}, ["no audit log in git"]),
            )
        logged = parse_log(committed, f"{LOG_FILE} at git HEAD")
        key = read_key(root)
        problems, signed = _chain(logged, key)
        work = root / LOG_FILE
        if not work.is_file() or work.read_bytes() != committed.encode():
            problems.append(
                f"{LOG_FILE} in the work tree differs from the committed log (an interrupted write, "
                "or an edit): run 'registry doctor --repair'"
            )
        anchors = git_anchors(root)
        problems += _anchor_problems(anchors, logged)
        problems += _db_problems(session, logged)
        state = replay([item.event for item in logged])
        problems += _state_problems(session, state)
        problems += _manifest_problems(root, state)
        head = logged[-1].event.hash if logged else GENESIS
        checked = {
            "events": len(logged),
            "head": head,
            "db_head": head_hash(session),
            "git_anchors": len(anchors),
            "signed": signed,
            "signatures": "checked"
            if key is not None
            else (f"not checked: set {KEY_ENV}" if signed else "none"),
        }
    result = VerifyResult("audit", not problems, checked, problems)
    if problems:
        raise VerificationError("audit log: " + "; ".join(problems), result=result)
    return result
