"""The human-readable text of a preflight document."""

from __future__ import annotations

from typing import Any

from .load import policy_reason


def render(doc: dict[str, Any]) -> str:
    """Human-readable text of a preflight document."""
    build = doc["build"]
    why = policy_reason(doc["validated"], doc["policy_from"] == "option", build["how"] is not None)
    out = [f"snapshot {doc['snapshot']}: kernel {doc['kernel']}"
           + (f" (Debian {build['version']})" if build["version"] else "") + f", policy {doc['policy']} ({why})"]
    for n in doc["notes"]:
        out.append(f"  note: {n}")
    for q in doc["questions"]:
        out.append(f"  open question: {q['text']}: answering for each of: " + " | ".join(q["options"]))
    many = len(doc["variants"]) > 1
    for v in doc["variants"]:
        if many:
            out.append(f"== if {v['label']}")
        out.append("  rebuilt from the snapshot:")
        for r in v["replay"]:
            out.append(f"    {r['action']}: {r['result']}    [{r['why']}]")
        for m in v["mismatches"]:
            out.append(f"    ! differs from the machine: {m}")
        for a in v["actions"]:
            head = f"[{a['index']}] {a['action']}: "
            if a["result"] == "ok":
                head += "ok" + ("" if a["safe"] else " -- BUT a guarantee breaks")
            else:
                head += f"FAILS {a['why']}"
            out.append(head)
            for c in a["changes"]:
                out.append(f"    record: {c}")
            for c in a["calls"]:
                if c.get("oops"):
                    out.append(f"    call {c['function']}: Oops")
                    continue
                line = f"    call {c['function']}: body={c['body']} programs={c['programs'] or '-'}"
                if c["hooks"]:
                    line += f" hooks={c['hooks']}"
                out.append(line)
                for w in c["warnings"]:
                    out.append(f"      WARN {w}")
            for e in a["events"]:
                if not e.startswith("INFO"):
                    out.append(f"    kernel: {e}")
            for b in a["broken"]:
                out.append(f"    ! guarantee broken: {b}")
    out.append("verdict: " + ("every action succeeds safely" if doc["ok"]
                              else "some action fails or breaks a guarantee"))
    return "\n".join(out) + "\n"
