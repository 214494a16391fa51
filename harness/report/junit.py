"""Checkers as JUnit XML, so CI UIs list every check of every cell (one test case each)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def write_junit(results: dict[str, Any], path: Path) -> int:
    """Write one ``<testcase>`` per cell × checker; returns the number of failing cases."""
    suite = ET.Element("testsuite", name=f"retrybench {results.get('run_id', '')}")
    failures = skipped = 0
    cases = 0
    for cell in results.get("cells", []):
        classname = f"retrybench.{cell['scenario']}.{cell['backend']}"
        checks = dict(cell.get("checks", {}))
        checks["complete"] = {"valid": bool(cell.get("complete")), "examples": [str(cell.get("reason"))]}
        for name, verdict in checks.items():
            cases += 1
            case = ET.SubElement(suite, "testcase", classname=classname, name=name)
            if verdict.get("valid", True):
                continue
            failures += 1
            examples = [e for k, v in verdict.items() if k.endswith("examples") for e in v]
            counts = {k: v for k, v in verdict.items() if isinstance(v, int) and not isinstance(v, bool) and v}
            failure = ET.SubElement(case, "failure", message="; ".join(examples[:3]) or f"{name} failed")
            failure.text = "\n".join([*examples, *(f"{k} = {v}" for k, v in sorted(counts.items()))])
    for scenario, verdict in (results.get("verdicts") or {}).items():
        for backend, row in (verdict.get("rows") or {}).items():
            # One case per row: its status over the repetitions (a row with fewer runs than asked is partial).
            cases += 1
            case = ET.SubElement(suite, "testcase", classname=f"retrybench.{scenario}.{backend}", name="verdict")
            ET.SubElement(ET.SubElement(case, "properties"), "property", name="runs",
                          value=f"{row.get('n')} of {row.get('asked')}")
            sentence = str((verdict.get("sentences") or {}).get(backend) or row.get("status"))
            if row.get("status") == "history off":  # the overhead baseline: nothing recorded, nothing judged
                skipped += 1
                ET.SubElement(case, "skipped", message=sentence[:500])
            elif row.get("status") != "pass":
                failures += 1
                failure = ET.SubElement(case, "failure", message=f"{row.get('status')}: {sentence}"[:500])
                failure.text = sentence
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return failures
