#!/usr/bin/env python3
"""optimizer.py — an example OPTIMIZER agent in Python (ECDSA P-256 / SHA-256).

Follows metrics/cpu, answers requests (the director asks it for a plan) with a plan
computed from the load it has seen, tries one subscription its role may not have
(debug/trace: refused, surfaced as agentbus.AclDenied), and runs until --seconds
elapsed or SIGINT/SIGTERM. Its output lines have the C++ examples' format
(examples/common/example_agent.hpp), which scripts/bus-demo.sh reads:

  [name] READY role=OPTIMIZER suite=... protection=tpm
  [name] DELIVERED from <sender> (<ROLE>, <suite>, <assurance>): topic <t>: <payload>
  [name] REQUEST from <sender> (...): <payload>
  [name] REFUSED <what>: <code>: <detail>
  [name] STATS sent=.. received=.. ...
  [name] EXIT <code>

Exit codes as the C++ examples: 0 ok, 1 failed, 2 usage, 3 setup, 4 enrolment.
Run it from the build tree with PYTHONPATH=<build>/python, or with the installed package.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

import agentbus


def say(name: str, text: str) -> None:
    print(f"[{name}] {text}", flush=True)


def origin(m: agentbus.Message) -> str:
    return f"from {m.sender} ({m.sender_role}, {m.suite}, {m.assurance})"


def text(payload: bytes, limit: int = 160) -> str:
    try:
        s = payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.hex()[:limit]
    return s if len(s) <= limit else s[:limit] + "..."


def main() -> int:
    p = argparse.ArgumentParser(description="agentbus example OPTIMIZER in Python: follows metrics/cpu, answers requests")
    p.add_argument("--name", default="optimizer-py")
    p.add_argument("--role", default="OPTIMIZER")
    p.add_argument("--key-dir", required=True, help="identity key directory (created in the TPM if empty)")
    p.add_argument("--tcti", default=os.environ.get("AGENTBUS_TCTI", ""), help="the TPM (default $AGENTBUS_TCTI)")
    p.add_argument("--enrolment-bundle", required=True, help="the operator's bundle (agentbus-trust token create --out)")
    p.add_argument("--policy", default=None, help="policy file (default: the built-in default policy)")
    p.add_argument("--seconds", type=float, default=0, help="run time (0: until SIGINT/SIGTERM)")
    args = p.parse_args()
    name = args.name

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    try:
        policy = agentbus.Policy.load(args.policy) if args.policy else agentbus.Policy.default()
        key = agentbus.open_or_create_identity(args.key_dir, args.role, tpm=args.tcti or None, policy=policy)
    except (agentbus.TpmError, agentbus.IdentityError, agentbus.PolicyFileError, ValueError) as e:
        say(name, f"SETUP FAILED {e}")
        return 3
    try:
        agent = agentbus.Agent(name, identity=key, policy=policy, bundle=args.enrolment_bundle)
    except agentbus.EnrolmentError as e:
        say(name, f"REFUSED by broker at enrolment: {e.code.name}: {e.detail}")
        return 4

    failures = 0
    loads: list[float] = []
    lock = threading.Lock()
    with agent:
        say(name, f"READY role={key.role} suite={key.suite.name} protection={key.protection}")

        def on_metric(m: agentbus.Message) -> None:
            say(name, f"DELIVERED {origin(m)}: topic {m.topic}: {text(m.payload)}")
            try:
                value = float(json.loads(m.payload).get("cpu", 0))
            except (ValueError, AttributeError):
                return
            with lock:
                loads.append(value)

        def on_request(m: agentbus.Message) -> bytes:
            say(name, f"REQUEST from {m.sender} ({m.sender_role}, {m.suite}, {m.assurance}): {text(m.payload)}")
            with lock:
                mean = sum(loads) / len(loads) if loads else 0.0
                seen = len(loads)
            plan = {"plan": "scale out" if mean > 0.75 else "hold", "mean_cpu": round(mean, 3), "samples": seen}
            return json.dumps(plan).encode()

        def on_rejected(r: agentbus.Rejection) -> None:
            if r.where == "broker":
                say(name, f"REFUSED by broker: {r.code_name}: {r.detail} (to {r.recipient}, id {r.message_id.hex()[:8]})")
            else:
                say(name, f"REJECTED at {r.where} from {r.sender}: {r.code_name}: {r.detail}")

        agent.on_request(on_request)
        agent.on_rejected(on_rejected)
        agent.on_message(lambda m: say(name, f"DELIVERED {origin(m)}: direct: {text(m.payload)}"))
        try:
            agent.subscribe("metrics/cpu", on_metric)
            say(name, "SUBSCRIBED metrics/cpu")
        except agentbus.Error as e:
            say(name, f"FAILED subscribe metrics/cpu: {e.code.name}: {e.detail}")
            failures += 1
        # Outside the role's ACL on purpose: the refusal arrives as agentbus.AclDenied.
        try:
            agent.subscribe("debug/trace", on_metric)
            say(name, "FAILED subscribe debug/trace was accepted, the policy forbids it")
            failures += 1
        except agentbus.AclDenied as e:
            say(name, f"REFUSED subscribe debug/trace: {e.code.name}: {e.detail}")

        deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.1)
        s = agent.stats()
        say(name, f"STATS sent={s.sent} received={s.received} rejected_at_receive={s.rejected_at_receive} "
                  f"refused_by_broker={s.refused_by_broker} sessions={s.sessions} handler_errors={agent.handler_errors}")
    code = 0 if failures == 0 and agent.handler_errors == 0 else 1
    say(name, f"EXIT {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
