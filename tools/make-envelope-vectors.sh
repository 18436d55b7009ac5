#!/usr/bin/env bash
# make-envelope-vectors.sh — regenerates the known-answer vectors in schemas/vectors/
# (schemas/vectors/README.md says what they contain): envelopes, forwarded hop MACs,
# a wire batch MAC, negative cases with their status codes, and the enrolment (hop)
# and agent↔agent (e2e) handshakes with their key schedules.
#
# It is an implementation of schemas/envelope.md and of schemas/protocol.md §3-§4
# independent of libagentbus: bash, the openssl CLI (keys, key ids, signatures, ECDH)
# and python3 with only its standard library (MessagePack encoding, SHA-2/SHA-3,
# HMAC, HKDF, Merkle tree). The C++ code must reproduce its bytes exactly
# (tests/envelope_vectors_test.cpp, tests/handshake_vectors_test.cpp).
#
# Keys are generated once and reused while their files exist, so a rerun changes only
# the signatures (ECDSA and RSA-PSS are randomised) and what covers them (MAC tags
# over a signature); every other value is derived deterministically from the
# vector's name.
#
# Usage: tools/make-envelope-vectors.sh [output-dir]   (default: schemas/vectors)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/schemas/vectors}
keys=$out/keys
mkdir -p "$keys"
command -v openssl >/dev/null || { echo "make-envelope-vectors: openssl not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "make-envelope-vectors: python3 not found" >&2; exit 1; }

# make_key NAME GENPKEY-ARGS...: a PKCS#8 private key and its SubjectPublicKeyInfo.
make_key() {
  local name=$1; shift
  if [ ! -f "$keys/$name.key.pem" ]; then
    openssl genpkey -quiet "$@" -out "$keys/$name.key.pem"
    echo "make-envelope-vectors: generated $keys/$name.key.pem"
  fi
  openssl pkey -in "$keys/$name.key.pem" -pubout -out "$keys/$name.pub.pem"
}
P256=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve)
P384=(-algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve)
# Envelope signing keys, one per suite's key type.
make_key p256 "${P256[@]}"
make_key p384 "${P384[@]}"
make_key rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072
# Enrolment handshake (handshake-hop.json): the agent's suite is ecdsa-p384-sha3-384
# (ECDH on P-384), the broker's identity suite ecdsa-p256-sha256.
make_key hop-agent-identity "${P384[@]}"
make_key hop-broker-identity "${P256[@]}"
make_key hop-agent-ephemeral "${P384[@]}"
make_key hop-agent-static "${P384[@]}"
make_key hop-broker-ephemeral "${P384[@]}"
make_key hop-broker-static "${P384[@]}"
# Agent↔agent handshake (handshake-e2e.json): initiator ecdsa-p256-sha256, responder
# ecdsa-p384-sha3-384, session curve P-384; only the responder has a static key.
make_key e2e-initiator-identity "${P256[@]}"
make_key e2e-responder-identity "${P384[@]}"
make_key e2e-initiator-ephemeral "${P384[@]}"
make_key e2e-responder-ephemeral "${P384[@]}"
make_key e2e-responder-static "${P384[@]}"

python3 - "$out" <<'PYTHON'
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import tempfile

OUT = sys.argv[1]
KEYS = os.path.join(OUT, "keys")

# ---- MessagePack, canonical (smallest) forms only: schemas/envelope.md §2 ----

def mp_uint(v):
    assert 0 <= v < 1 << 64
    if v < 0x80: return bytes([v])
    if v < 1 << 8: return b"\xcc" + struct.pack(">B", v)
    if v < 1 << 16: return b"\xcd" + struct.pack(">H", v)
    if v < 1 << 32: return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)

def mp_str(s):
    b = s.encode("utf-8")
    n = len(b)
    if n < 32: head = bytes([0xa0 | n])
    elif n < 1 << 8: head = b"\xd9" + struct.pack(">B", n)
    elif n < 1 << 16: head = b"\xda" + struct.pack(">H", n)
    else: head = b"\xdb" + struct.pack(">I", n)
    return head + b

def mp_bin(b):
    n = len(b)
    if n < 1 << 8: head = b"\xc4" + struct.pack(">B", n)
    elif n < 1 << 16: head = b"\xc5" + struct.pack(">H", n)
    else: head = b"\xc6" + struct.pack(">I", n)
    return head + b

def mp_array(items):
    n = len(items)
    if n < 16: head = bytes([0x90 | n])
    elif n < 1 << 16: head = b"\xdc" + struct.pack(">H", n)
    else: head = b"\xdd" + struct.pack(">I", n)
    return head + b"".join(items)

def mp_map(pairs):
    n = len(pairs)
    if n < 16: head = bytes([0x80 | n])
    elif n < 1 << 16: head = b"\xde" + struct.pack(">H", n)
    else: head = b"\xdf" + struct.pack(">I", n)
    return head + b"".join(k + v for k, v in pairs)

NIL = b"\xc0"

# ---- The envelope ----

TYPES = {"data": 1, "request": 2, "reply": 3, "error": 4, "control": 5}
TO_KINDS = {"agent": 0, "topic": 1}
ASSURANCE_CODES = {"tpm": 1, "tpm-batch": 2, "software": 3}
HASHES = {"sha256": "sha256", "sha384": "sha384", "sha3-256": "sha3_256", "sha3-384": "sha3_384"}
HASH_SIZES = {"sha256": 32, "sha384": 48, "sha3-256": 32, "sha3-384": 48}

def H(name, data):
    return hashlib.new(HASHES[name], data).digest()

def signed_items(h):
    """The 13 encoded fields of a signed part (§3), for encoders and for the negative cases."""
    return [
        mp_uint(h["version"]), mp_uint(TYPES[h["type"]]), mp_bin(bytes.fromhex(h["message_id"])),
        mp_bin(bytes.fromhex(h["correlation_id"])), mp_str(h["sender"]), mp_uint(TO_KINDS[h["to_kind"]]),
        mp_str(h["to"]), mp_uint(h["sequence"]), mp_uint(h["timestamp_ms"]), mp_str(h["suite"]),
        mp_str(h["content_type"]), mp_map([(mp_str(k), mp_str(v)) for k, v in h["headers"]]),
        mp_bin(bytes.fromhex(h["payload"])),
    ]

def encode_signed(h):
    return mp_array(signed_items(h))

def auth_items(a):
    """The 7 encoded fields of an auth part (§4)."""
    batch = NIL
    if a["batch"] is not None:
        b = a["batch"]
        batch = mp_array([mp_uint(b["leaf_index"]), mp_uint(b["leaf_count"]),
                          mp_array([mp_bin(bytes.fromhex(p)) for p in b["path"]])])
    hop = NIL
    if a["hop_mac"] is not None:
        hop = mp_array([mp_bin(bytes.fromhex(a["hop_mac"]["session_id"])), mp_bin(bytes.fromhex(a["hop_mac"]["tag"]))])
    e2e = mp_array([mp_array([mp_str(m["recipient"]), mp_bin(bytes.fromhex(m["session_id"])),
                              mp_bin(bytes.fromhex(m["tag"]))]) for m in a["e2e_macs"]])
    return [mp_uint(a["version"]), mp_str(a["assurance"]), mp_bin(bytes.fromhex(a["key_id"])),
            mp_bin(bytes.fromhex(a["signature"])), batch, hop, e2e]

def encode_auth(a):
    return mp_array(auth_items(a))

def mac_body(label, digest, a):
    key_id = bytes.fromhex(a["key_id"])
    sig = bytes.fromhex(a["signature"])
    out = label + b"\x00" + bytes([len(digest)]) + digest + bytes([ASSURANCE_CODES[a["assurance"]]])
    out += bytes([len(key_id)]) + key_id + struct.pack(">H", len(sig)) + sig
    if a["batch"] is None:
        out += b"\x00"
    else:
        b = a["batch"]
        out += b"\x01" + struct.pack(">II", b["leaf_index"], b["leaf_count"]) + bytes([len(b["path"])])
        for p in b["path"]:
            node = bytes.fromhex(p)
            out += bytes([len(node)]) + node
    return out

def hop_mac_input(digest, a):
    return mac_body(b"agentbus-v1-hop", digest, a)

def e2e_mac_input(digest, a, recipient):
    r = recipient.encode()
    return mac_body(b"agentbus-v1-e2e", digest, a) + bytes([len(r)]) + r

def wire_batch_mac_input(members):
    """§8: label || 0x00 || u32be(count) || per member u32be(len) || hop_mac_input."""
    out = b"agentbus-v1-hop-batch" + b"\x00" + struct.pack(">I", len(members))
    for digest, a in members:
        m = hop_mac_input(digest, a)
        out += struct.pack(">I", len(m)) + m
    return out

# ---- Merkle tree for tpm-batch: leaf = H(0x00||digest), node = H(0x01||l||r), odd last promoted ----

def merkle(hash_name, digests, index):
    level = [H(hash_name, b"\x00" + d) for d in digests]
    path = []
    i = index
    while len(level) > 1:
        if i % 2 == 1: path.append(level[i - 1])
        elif i + 1 < len(level): path.append(level[i + 1])
        nxt = [H(hash_name, b"\x01" + level[k] + level[k + 1]) for k in range(0, len(level) - 1, 2)]
        if len(level) % 2 == 1: nxt.append(level[-1])
        level = nxt
        i //= 2
    return level[0], path

def merkle_root_from_proof(hash_name, digest, index, count, path):
    h = H(hash_name, b"\x00" + digest)
    k = 0
    while count > 1:
        if index % 2 == 1:
            h = H(hash_name, b"\x01" + path[k] + h); k += 1
        elif index + 1 < count:
            h = H(hash_name, b"\x01" + h + path[k]); k += 1
        index //= 2
        count = (count + 1) // 2
    assert k == len(path)
    return h

# ---- HKDF (RFC 5869), extract then expand ----

def hkdf(hash_name, salt, ikm, info, length):
    prk = hmac.new(salt, ikm, HASHES[hash_name]).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), HASHES[hash_name]).digest()
        okm += t
        i += 1
    return okm[:length]

def hmac_tag(hash_name, key, data):
    return hmac.new(key, data, HASHES[hash_name]).digest()

# ---- openssl CLI ----

def run(*args, data=None):
    return subprocess.run(args, input=data, check=True, capture_output=True).stdout

def key_file(key, public):
    return os.path.join(KEYS, key + (".pub.pem" if public else ".key.pem"))

def pss_opts(hash_name):
    return ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:" + hash_name,
            "-pkeyopt", "rsa_mgf1_md:" + hash_name]

def cli_verifies(key, scheme, hash_name, digest, sig):
    """The openssl CLI's verdict on a signature over a digest (PSS: any salt length)."""
    with tempfile.TemporaryDirectory() as tmp:
        dgst = os.path.join(tmp, "dgst")
        sigf = os.path.join(tmp, "sig")
        with open(dgst, "wb") as f: f.write(digest)
        with open(sigf, "wb") as f: f.write(sig)
        extra = pss_opts(hash_name) + ["-pkeyopt", "rsa_pss_saltlen:auto"] if scheme == "rsa-pss" else []
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", key_file(key, True),
                            "-in", dgst, "-sigfile", sigf, *extra], capture_output=True)
        return r.returncode == 0

def sign_digest(key, scheme, hash_name, digest):
    with tempfile.TemporaryDirectory() as tmp:
        dgst = os.path.join(tmp, "dgst")
        sig = os.path.join(tmp, "sig")
        with open(dgst, "wb") as f: f.write(digest)
        extra = []
        if scheme == "rsa-pss":
            extra = pss_opts(hash_name) + ["-pkeyopt", "rsa_pss_saltlen:digest"]
        run("openssl", "pkeyutl", "-sign", "-inkey", key_file(key, False), "-in", dgst, "-out", sig, *extra)
        with open(sig, "rb") as f: out = f.read()
    # Check with the CLI too, as a third party would.
    assert cli_verifies(key, scheme, hash_name, digest, out), "openssl refuses its own signature"
    return out

def der(key):
    return run("openssl", "pkey", "-pubin", "-in", key_file(key, True), "-outform", "DER")

def key_id(key):
    return hashlib.sha256(der(key)).digest()

def ecdh(mine, peer):
    """x(d_mine * Q_peer), as `openssl pkeyutl -derive` gives it (the field size)."""
    return run("openssl", "pkeyutl", "-derive", "-inkey", key_file(mine, False), "-peerkey", key_file(peer, True))

def read(path):
    with open(path) as f: return f.read()

def key_json(key):
    return {"private_key_pem": read(key_file(key, False)), "public_key_pem": read(key_file(key, True)),
            "der": der(key).hex()}

# ---- Deterministic field values ----

def det(name, label, n):
    return hashlib.shake_256((name + "/" + label).encode()).digest(n)

SUITES = {
    "ecdsa-p256-sha256":   {"scheme": "ecdsa",   "key": "p256",    "curve": "P-256", "rsa_bits": 0,    "envelope_hash": "sha256",   "mac_hash": "sha256", "ecdh_curve": "P-256"},
    "ecdsa-p384-sha3-384": {"scheme": "ecdsa",   "key": "p384",    "curve": "P-384", "rsa_bits": 0,    "envelope_hash": "sha3-384", "mac_hash": "sha384", "ecdh_curve": "P-384"},
    "rsa3072-pss-sha384":  {"scheme": "rsa-pss", "key": "rsa3072", "curve": "",      "rsa_bits": 3072, "envelope_hash": "sha384",   "mac_hash": "sha384", "ecdh_curve": "P-384"},
    "ecdsa-p256-sha3-256": {"scheme": "ecdsa",   "key": "p256",    "curve": "P-256", "rsa_bits": 0,    "envelope_hash": "sha3-256", "mac_hash": "sha256", "ecdh_curve": "P-256"},
}

def suite_json(name):
    s = SUITES[name]
    return {"name": name, "signature_scheme": s["scheme"], "curve": s["curve"], "rsa_bits": s["rsa_bits"],
            "envelope_hash": s["envelope_hash"], "mac_hash": s["mac_hash"], "ecdh_curve": s["ecdh_curve"]}

def header_of(name, v):
    return {
        "version": 1, "type": v["type"], "message_id": v.get("message_id", det(name, "message_id", 16)).hex(),
        "correlation_id": v["correlation_id"].hex() if "correlation_id" in v
                          else (det(name, "correlation_id", 16).hex() if v.get("correlated") else ""),
        "sender": v["sender"], "to_kind": v["to_kind"], "to": v["to"], "sequence": v["sequence"],
        "timestamp_ms": v["timestamp_ms"], "suite": v["suite"], "content_type": v["content_type"],
        "headers": v["headers"], "payload": v["payload"].hex(),
    }

def new_auth(assurance, key, signature, batch):
    return {"version": 1, "assurance": assurance, "key_id": key_id(key).hex(), "signature": signature.hex(),
            "batch": batch, "hop_mac": None, "e2e_macs": []}

def e2e_entries(name, mh, digest, auth, recipients):
    out = []
    for r in recipients:
        k = det(name, "e2e-key/" + r, HASH_SIZES[mh])
        data = e2e_mac_input(digest, auth, r)
        out.append({"recipient": r, "key": k.hex(), "session_id": det(name, "e2e-session/" + r, 16).hex(),
                    "input": data.hex(), "tag": hmac_tag(mh, k, data).hex()})
    return out

def forwarded_hop_macs(name, digest, auth, forward):
    """The broker re-MACs an envelope for each recipient: the recipient's hop key and MAC
    hash, over the same hop_mac_input (its digest under the sender's envelope hash)."""
    hop_in = hop_mac_input(digest, auth)
    out = []
    for recipient, recipient_suite in forward:
        mh = SUITES[recipient_suite]["mac_hash"]
        k = det(name, "forward-hop-key/" + recipient, HASH_SIZES[mh])
        sid = det(name, "forward-hop-session/" + recipient, 16)
        tag = hmac_tag(mh, k, hop_in)
        forwarded = dict(auth, hop_mac={"session_id": sid.hex(), "tag": tag.hex()})
        out.append({"recipient": recipient, "recipient_suite": recipient_suite, "mac_hash": mh, "key": k.hex(),
                    "session_id": sid.hex(), "input": hop_in.hex(), "tag": tag.hex(),
                    "auth_part": encode_auth(forwarded).hex()})
    return out

# ---- Envelope vectors (one file each) ----

VECTORS = [
    {"name": "ecdsa-p256-sha256-topic", "suite": "ecdsa-p256-sha256", "assurance": "tpm",
     "type": "data", "sender": "monitor-1", "to_kind": "topic", "to": "metrics/cpu.load", "correlated": False,
     "sequence": 42, "timestamp_ms": 1767225600123, "content_type": "application/json",
     "headers": [["trace-id", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"], ["priority", "high"]],
     "payload": b'{"cpu":0.42,"host":"node-7"}', "recipients": ["optimizer-1", "debugger-1", "monitor-2"],
     "forward": [["optimizer-1", "ecdsa-p384-sha3-384"], ["debugger-1", "rsa3072-pss-sha384"],
                 ["monitor-2", "ecdsa-p256-sha256"]]},
    {"name": "ecdsa-p384-sha3-384-request", "suite": "ecdsa-p384-sha3-384", "assurance": "tpm",
     "type": "request", "sender": "architect-1", "to_kind": "agent", "to": "constructor-2", "correlated": False,
     "sequence": (1 << 40) + 7, "timestamp_ms": 1767225601000, "content_type": "application/octet-stream",
     "headers": [], "payload": bytes(range(256)), "recipients": ["constructor-2"],
     "forward": [["constructor-2", "ecdsa-p256-sha3-256"]]},
    {"name": "rsa3072-pss-sha384-reply", "suite": "rsa3072-pss-sha384", "assurance": "tpm",
     "type": "reply", "sender": "director-1", "to_kind": "agent", "to": "security-1", "correlated": True,
     "sequence": 300, "timestamp_ms": 1767225602500, "content_type": "text/plain; charset=utf-8",
     "headers": [["lang", "de"], ["note", "Grüße ✓"]], "payload": "approved: Änderung 17".encode(),
     "recipients": ["security-1"], "forward": [["security-1", "ecdsa-p256-sha256"]]},
    {"name": "ecdsa-p256-sha3-256-control", "suite": "ecdsa-p256-sha3-256", "assurance": "software",
     "type": "control", "sender": "worker.7_b", "to_kind": "agent", "to": "broker", "correlated": False,
     "sequence": 70000, "timestamp_ms": 0, "content_type": "", "headers": [], "payload": b"",
     "recipients": ["broker"], "forward": []},
    {"name": "ecdsa-p256-sha256-batch", "suite": "ecdsa-p256-sha256", "assurance": "tpm-batch",
     "type": "error", "sender": "monitor-1", "to_kind": "agent", "to": "director-1", "correlated": True,
     "sequence": 43, "timestamp_ms": 1767225603000, "content_type": "application/json",
     "headers": [["code", "503"]], "payload": b'{"error":"disk full"}', "recipients": ["director-1"],
     "batch": {"leaf_index": 2, "leaf_count": 5}, "forward": [["director-1", "rsa3072-pss-sha384"]]},
    {"name": "rsa3072-pss-sha384-batch", "suite": "rsa3072-pss-sha384", "assurance": "tpm-batch",
     "type": "data", "sender": "director-1", "to_kind": "topic", "to": "plans/release", "correlated": False,
     "sequence": 301, "timestamp_ms": 1767225604000, "content_type": "application/json",
     "headers": [["release", "2026.12"]], "payload": b'{"approved":true}', "recipients": ["architect-1", "monitor-1"],
     "batch": {"leaf_index": 5, "leaf_count": 6},
     "forward": [["architect-1", "ecdsa-p384-sha3-384"], ["monitor-1", "ecdsa-p256-sha256"]]},
    {"name": "ecdsa-p384-sha3-384-batch", "suite": "ecdsa-p384-sha3-384", "assurance": "tpm-batch",
     "type": "data", "sender": "architect-1", "to_kind": "agent", "to": "constructor-2", "correlated": False,
     "sequence": (1 << 40) + 8, "timestamp_ms": 1767225605000, "content_type": "text/plain",
     "headers": [], "payload": b"build 7 of 7", "recipients": ["constructor-2"],
     "batch": {"leaf_index": 6, "leaf_count": 7}, "forward": [["constructor-2", "ecdsa-p256-sha3-256"]]},
]

def make(v):
    name = v["name"]
    suite = SUITES[v["suite"]]
    eh, mh = suite["envelope_hash"], suite["mac_hash"]
    header = header_of(name, v)
    signed = encode_signed(header)
    digest = H(eh, signed)
    vec = {"kind": "envelope", "name": name, "description": "", "suite": v["suite"],
           "signature_scheme": suite["scheme"], "curve": suite["curve"], "rsa_bits": suite["rsa_bits"],
           "envelope_hash": eh, "mac_hash": mh,
           "private_key_pem": read(key_file(suite["key"], False)),
           "public_key_pem": read(key_file(suite["key"], True)),
           "header": header, "signed_part": signed.hex(), "digest": digest.hex()}

    batch = None
    signed_value = digest
    if "batch" in v:
        idx, count = v["batch"]["leaf_index"], v["batch"]["leaf_count"]
        leaves = [H(eh, ("%s/other-envelope-%d" % (name, k)).encode()) for k in range(count)]
        leaves[idx] = digest
        root, path = merkle(eh, leaves, idx)
        assert merkle_root_from_proof(eh, digest, idx, count, path) == root
        batch = {"leaf_index": idx, "leaf_count": count, "path": [p.hex() for p in path]}
        vec["batch_leaf_digests"] = [d.hex() for d in leaves]
        vec["batch_root"] = root.hex()
        signed_value = root
        vec["description"] = ("tpm-batch: leaf %d of %d; the signature covers the Merkle root, not the digest"
                              % (idx, count))
    else:
        vec["description"] = "direct: the signature covers the envelope digest"

    auth = new_auth(v["assurance"], suite["key"], sign_digest(suite["key"], suite["scheme"], eh, signed_value), batch)

    hop_key = det(name, "hop-key", HASH_SIZES[mh])
    hop_in = hop_mac_input(digest, auth)
    hop_tag = hmac_tag(mh, hop_key, hop_in)
    vec["hop_mac"] = {"key": hop_key.hex(), "session_id": det(name, "hop-session", 16).hex(),
                      "input": hop_in.hex(), "tag": hop_tag.hex()}
    vec["e2e_macs"] = e2e_entries(name, mh, digest, auth, v["recipients"])

    # The MACs are over the signature, not over each other, so the auth part is
    # assembled last.
    auth["hop_mac"] = {"session_id": vec["hop_mac"]["session_id"], "tag": hop_tag.hex()}
    auth["e2e_macs"] = [{"recipient": m["recipient"], "session_id": m["session_id"], "tag": m["tag"]}
                        for m in vec["e2e_macs"]]
    vec["auth"] = auth
    vec["auth_part"] = encode_auth(auth).hex()
    vec["forwarded_hop_macs"] = forwarded_hop_macs(name, digest, auth, v["forward"])
    return vec

# ---- Wire batch (§7.3): three envelopes of one signed batch under one MAC per hop ----

def make_wire_batch():
    name = "wire-batch-mac"
    suite_name = "ecdsa-p256-sha256"
    suite = SUITES[suite_name]
    eh, mh = suite["envelope_hash"], suite["mac_hash"]
    recipient, recipient_suite = "director-1", "rsa3072-pss-sha384"
    specs = [
        {"type": "data", "sequence": 100, "payload": b'{"cpu":0.40}', "headers": [["part", "1"]]},
        {"type": "data", "sequence": 101, "payload": b'{"cpu":0.41}', "headers": [["part", "2"]]},
        {"type": "request", "sequence": 102, "payload": b'{"query":"disk"}', "headers": []},
    ]
    headers, signed, digests = [], [], []
    for i, s in enumerate(specs):
        h = header_of("%s/%d" % (name, i), {
            "type": s["type"], "sender": "monitor-1", "to_kind": "agent", "to": recipient,
            "sequence": s["sequence"], "timestamp_ms": 1767225606000 + i, "suite": suite_name,
            "content_type": "application/json", "headers": s["headers"], "payload": s["payload"]})
        headers.append(h)
        signed.append(encode_signed(h))
        digests.append(H(eh, signed[-1]))
    root, _ = merkle(eh, digests, 0)
    signature = sign_digest(suite["key"], suite["scheme"], eh, root)
    members, auths = [], []
    for i in range(len(specs)):
        r, path = merkle(eh, digests, i)
        assert r == root
        auth = new_auth("tpm-batch", suite["key"], signature,
                        {"leaf_index": i, "leaf_count": len(specs), "path": [p.hex() for p in path]})
        # End-to-end MACs are per envelope, for the receiver; there is no hop MAC.
        e2e = e2e_entries("%s/%d" % (name, i), mh, digests[i], auth, [recipient])
        auth["e2e_macs"] = [{"recipient": m["recipient"], "session_id": m["session_id"], "tag": m["tag"]} for m in e2e]
        auths.append(auth)
        members.append({"header": headers[i], "signed_part": signed[i].hex(), "digest": digests[i].hex(),
                        "auth": auth, "auth_part": encode_auth(auth).hex(),
                        "hop_mac_input": hop_mac_input(digests[i], auth).hex(), "e2e_macs": e2e})
    batch_in = wire_batch_mac_input(list(zip(digests, auths)))
    hops = []
    for direction, hop_suite, who in (("agent-to-broker", suite_name, "monitor-1"),
                                      ("broker-to-agent", recipient_suite, recipient)):
        hh = SUITES[hop_suite]["mac_hash"]
        k = det(name, "hop-key/" + direction, HASH_SIZES[hh])
        sid = det(name, "hop-session/" + direction, 16)
        tag = hmac_tag(hh, k, batch_in)
        frames = [b"BATCH", sid, tag]
        for i in range(len(specs)):
            frames += [signed[i], bytes.fromhex(members[i]["auth_part"])]
        hops.append({"direction": direction, "hop_agent": who, "hop_suite": hop_suite, "mac_hash": hh,
                     "key": k.hex(), "session_id": sid.hex(), "tag": tag.hex(), "frames": [f.hex() for f in frames]})
    return {"kind": "wire-batch-mac", "name": name,
            "description": "a BATCH of the three envelopes of one tpm-batch signature, from monitor-1 "
                           "(HMAC-SHA256 hop) to the broker, and from the broker to director-1 "
                           "(HMAC-SHA384 hop): one input, two tags",
            "sender": "monitor-1", "suite": suite_json(suite_name),
            "public_key_pem": read(key_file(suite["key"], True)),
            "batch_root": root.hex(), "members": members, "input": batch_in.hex(), "hops": hops}

# ---- Negative cases (§9 decoding, §7 signatures) with their status codes ----

CODES = {"malformed": 100, "too_large": 101, "trailing_bytes": 102, "duplicate_key": 103, "too_deep": 104,
         "unsupported_version": 105, "invalid_field": 106, "bad_signature": 300, "bad_batch_proof": 304,
         "bad_batch_signature": 305}

def expect(code):
    return {"code": CODES[code], "name": code}

def der_parts(sig):
    """Split a strict-DER ECDSA-Sig-Value (short-form lengths) into its r and s INTEGER bodies."""
    assert sig[0] == 0x30 and sig[1] < 0x80 and sig[1] + 2 == len(sig)
    assert sig[2] == 0x02
    rl = sig[3]
    r = sig[4:4 + rl]
    assert sig[4 + rl] == 0x02
    sl = sig[5 + rl]
    s = sig[6 + rl:6 + rl + sl]
    assert 6 + rl + sl == len(sig)
    return r, s

def make_negative():
    name = "negative"
    suite_name = "ecdsa-p256-sha256"
    suite = SUITES[suite_name]
    eh = suite["envelope_hash"]
    key = suite["key"]

    # Base "direct": a valid tpm envelope. Base "batch": leaf 2 of 5 of a valid batch.
    direct_h = header_of(name + "/direct", {
        "type": "data", "sender": "monitor-1", "to_kind": "agent", "to": "director-1", "sequence": 7,
        "timestamp_ms": 1767225607000, "suite": suite_name, "content_type": "application/json",
        "headers": [["priority", "high"]], "payload": b'{"cpu":0.5}'})
    direct_sp = encode_signed(direct_h)
    direct_d = H(eh, direct_sp)
    direct_auth = new_auth("tpm", key, sign_digest(key, suite["scheme"], eh, direct_d), None)
    direct_ap = encode_auth(direct_auth)

    batch_h = header_of(name + "/batch", {
        "type": "data", "sender": "monitor-1", "to_kind": "agent", "to": "director-1", "sequence": 8,
        "timestamp_ms": 1767225607001, "suite": suite_name, "content_type": "application/json",
        "headers": [], "payload": b'{"cpu":0.6}'})
    batch_sp = encode_signed(batch_h)
    batch_d = H(eh, batch_sp)
    leaves = [H(eh, ("%s/other-envelope-%d" % (name, k)).encode()) for k in range(5)]
    leaves[2] = batch_d
    root, path = merkle(eh, leaves, 2)
    batch_sig = sign_digest(key, suite["scheme"], eh, root)
    batch_auth = new_auth("tpm-batch", key, batch_sig, {"leaf_index": 2, "leaf_count": 5, "path": [p.hex() for p in path]})
    batch_ap = encode_auth(batch_auth)

    bases = {
        "direct": {"description": "a valid direct (tpm) envelope; no hop or end-to-end MAC",
                   "signed_part": direct_sp.hex(), "auth_part": direct_ap.hex(), "digest": direct_d.hex()},
        "batch": {"description": "a valid tpm-batch envelope, leaf 2 of 5; no hop or end-to-end MAC",
                  "signed_part": batch_sp.hex(), "auth_part": batch_ap.hex(), "digest": batch_d.hex(),
                  "batch_root": root.hex()},
    }
    cases = []

    def case(case_name, description, base, step, code, signed_part, auth_part, with_cache=None):
        c = {"name": case_name, "description": description, "base": base, "step": step,
             "signed_part": signed_part.hex(), "auth_part": auth_part.hex()}
        if step == "verify_signature":
            c["suite"] = suite_json(suite_name)
            c["public_key_pem"] = read(key_file(key, True))
            c["digest"] = H(eh, signed_part).hex()
        c["expected"] = expect(code)
        if with_cache is not None:
            c["expected_with_cache"] = expect(with_cache)
        cases.append(c)

    def signed_with(index=None, encoding=None, items=None):
        it = list(items if items is not None else signed_items(direct_h))
        if index is not None: it[index] = encoding
        return mp_array(it)

    def auth_with(base_auth, **changes):
        a = dict(base_auth)
        a.update(changes)
        return encode_auth(a)

    S, A = "decode_signed_part", "decode_auth_part"
    # --- the signed part (§9 steps 2-4) ---
    case("signed-trailing-byte", "one 0x00 byte after the signed part's array", "direct", S, "trailing_bytes",
         direct_sp + b"\x00", direct_ap)
    case("signed-truncated", "the signed part without its last byte (the payload's body is cut off)", "direct", S,
         "malformed", direct_sp[:-1], direct_ap)
    case("signed-non-canonical-uint", "sequence 7 written as uint8 0xcc 0x07 instead of positive fixint", "direct",
         S, "malformed", signed_with(7, b"\xcc\x07"), direct_ap)
    case("signed-non-canonical-str-length", "content_type (16 bytes) written as str8 instead of fixstr", "direct",
         S, "malformed", signed_with(10, b"\xd9\x10" + b"application/json"), direct_ap)
    case("signed-signed-int-format", "sequence 7 written as int8 0xd0 0x07: a signed format, even for a "
         "non-negative value, is a field of the wrong type", "direct", S, "malformed",
         signed_with(7, b"\xd0\x07"), direct_ap)
    case("signed-12-elements", "the signed part's array without its payload (12 elements)", "direct", S,
         "malformed", mp_array(signed_items(direct_h)[:12]), direct_ap)
    case("signed-14-elements", "the signed part's array with a 14th element (uint 0)", "direct", S, "malformed",
         mp_array(signed_items(direct_h) + [mp_uint(0)]), direct_ap)
    case("signed-unsupported-version", "version 2", "direct", S, "unsupported_version",
         signed_with(0, mp_uint(2)), direct_ap)
    case("signed-duplicate-header-key", "headers {priority: high, priority: low}", "direct", S, "duplicate_key",
         signed_with(11, mp_map([(mp_str("priority"), mp_str("high")), (mp_str("priority"), mp_str("low"))])),
         direct_ap)
    case("signed-too-deep", "a header value [[[]]]: the innermost array is at depth 5 (max_depth 4)", "direct", S,
         "too_deep", signed_with(11, mp_map([(mp_str("k"), mp_array([mp_array([mp_array([])])]))])), direct_ap)
    case("signed-array-header-value", "a header value [] (depth 3, within max_depth): a field of the wrong type",
         "direct", S, "malformed", signed_with(11, mp_map([(mp_str("k"), mp_array([]))])), direct_ap)
    case("signed-header-value-control-character", "a header value with U+0007", "direct", S, "invalid_field",
         signed_with(11, mp_map([(mp_str("note"), mp_str("a\x07b"))])), direct_ap)
    case("signed-message-id-15-bytes", "message_id of 15 bytes", "direct", S, "invalid_field",
         signed_with(2, mp_bin(bytes(15))), direct_ap)

    # --- the auth part (§9 steps 2-4; the batch proof's order in §9) ---
    case("auth-trailing-byte", "one 0x00 byte after the auth part's array", "direct", A, "trailing_bytes",
         direct_sp, direct_ap + b"\x00")
    case("auth-6-elements", "the auth part's array without e2e_macs (6 elements)", "direct", A, "malformed",
         direct_sp, mp_array(auth_items(direct_auth)[:6]))
    case("auth-key-id-31-bytes", "key_id of 31 bytes", "direct", A, "invalid_field", direct_sp,
         auth_with(direct_auth, key_id=bytes.fromhex(direct_auth["key_id"])[:31].hex()))
    case("auth-empty-signature", "a signature of 0 bytes", "direct", A, "invalid_field", direct_sp,
         auth_with(direct_auth, signature=""))
    case("auth-duplicate-e2e-recipient", "two e2e_macs entries for director-1", "direct", A, "duplicate_key",
         direct_sp, auth_with(direct_auth, e2e_macs=[
             {"recipient": "director-1", "session_id": det(name, "dup-session/0", 16).hex(),
              "tag": det(name, "dup-tag/0", 32).hex()},
             {"recipient": "director-1", "session_id": det(name, "dup-session/1", 16).hex(),
              "tag": det(name, "dup-tag/1", 32).hex()}]))
    case("auth-batch-with-assurance-tpm", "a batch proof with assurance tpm", "batch", A, "invalid_field",
         batch_sp, auth_with(batch_auth, assurance="tpm"))
    case("auth-tpm-batch-without-batch", "assurance tpm-batch with batch nil", "batch", A, "invalid_field",
         batch_sp, auth_with(batch_auth, batch=None))
    case("auth-leaf-index-not-below-count", "leaf_index 5 of leaf_count 5", "batch", A, "invalid_field",
         batch_sp, auth_with(batch_auth, batch=dict(batch_auth["batch"], leaf_index=5)))
    case("auth-path-wrong-length", "leaf 2 of 5 needs 3 siblings; the path has 4", "batch", A, "invalid_field",
         batch_sp, auth_with(batch_auth, batch=dict(batch_auth["batch"],
                                                    path=batch_auth["batch"]["path"] + [det(name, "extra", 32).hex()])))
    case("auth-path-longer-than-max-path", "a path of 33 elements (max_path 32), refused before the shape check",
         "batch", A, "too_large", batch_sp,
         auth_with(batch_auth, batch=dict(batch_auth["batch"],
                                          path=[det(name, "long/%d" % k, 32).hex() for k in range(33)])))
    case("auth-path-node-mixed-sizes", "the second of 3 path elements is 48 bytes, the others 32", "batch", A,
         "invalid_field", batch_sp,
         auth_with(batch_auth, batch=dict(batch_auth["batch"], path=[
             batch_auth["batch"]["path"][0], det(name, "node48", 48).hex(), batch_auth["batch"]["path"][2]])))
    case("auth-path-node-31-bytes", "every path element 31 bytes (below 32)", "batch", A, "invalid_field",
         batch_sp, auth_with(batch_auth, batch=dict(batch_auth["batch"],
                                                    path=[p[:62] for p in batch_auth["batch"]["path"]])))

    # --- the signature (§7), by a verifier without a root cache ---
    V = "verify_signature"
    sig = bytes.fromhex(direct_auth["signature"])
    r, s = der_parts(sig)
    body = b"\x02" + bytes([len(r)]) + r + b"\x02" + bytes([len(s)]) + s
    variants = [
        ("signature-ber-long-form-length", "the signature's SEQUENCE length in BER long form (0x81 n): the same (r, s), "
         "not strict DER", b"\x30\x81" + bytes([len(body)]) + body),
        ("signature-padded-integer", "r with a superfluous leading 0x00 byte: the same (r, s), not strict DER",
         (lambda b2: b"\x30" + bytes([len(b2)]) + b2)(b"\x02" + bytes([len(r) + 1]) + b"\x00" + r + b"\x02" +
                                                      bytes([len(s)]) + s)),
        ("signature-trailing-byte", "one 0x00 byte after the DER SEQUENCE", sig + b"\x00"),
    ]
    for case_name, description, bad in variants:
        assert not cli_verifies(key, suite["scheme"], eh, direct_d, bad), case_name + ": openssl accepts it"
        case(case_name, description, "direct", V, "bad_signature", direct_sp, auth_with(direct_auth, signature=bad.hex()))
    changed = dict(direct_h, payload=b'{"cpu":0.9}'.hex())
    case("signature-payload-changed", "the payload changed after signing (the auth part is the base's)", "direct",
         V, "bad_signature", encode_signed(changed), direct_ap)
    forged = list(batch_auth["batch"]["path"])
    forged[1] = det(name, "forged-sibling", 32).hex()
    case("batch-forged-path", "path[1] replaced by another 32-byte value: a path of the right shape that leads "
         "to another root", "batch", V, "bad_batch_signature", batch_sp,
         auth_with(batch_auth, batch=dict(batch_auth["batch"], path=forged)), with_cache="bad_batch_proof")
    case("batch-leaf-index-changed", "leaf_index 3 instead of 2 (the same path length for 5 leaves): another root",
         "batch", V, "bad_batch_signature", batch_sp,
         auth_with(batch_auth, batch=dict(batch_auth["batch"], leaf_index=3)), with_cache="bad_batch_proof")
    case("batch-payload-changed", "the payload changed after signing: another leaf, another root", "batch", V,
         "bad_batch_signature", encode_signed(dict(batch_h, payload=b'{"cpu":0.9}'.hex())), batch_ap,
         with_cache="bad_batch_proof")
    case("batch-path-node-not-suite-hash-size", "path elements of 48 bytes under a SHA-256 suite: the decoder "
         "accepts them (32-64, one size), the verifier does not", "batch", V, "invalid_field", batch_sp,
         auth_with(batch_auth, batch=dict(batch_auth["batch"],
                                          path=[det(name, "wide/%d" % k, 48).hex() for k in range(3)])),
         with_cache="invalid_field")
    return {"kind": "negative", "name": name,
            "description": "frames a conforming decoder or verifier refuses, each with the code it reports",
            "limits": "default decode_limits (schemas/envelope.md §9)",
            "sender": "monitor-1", "suite": suite_json(suite_name), "public_key_pem": read(key_file(key, True)),
            "bases": bases, "cases": cases}

# ---- Enrolment handshake and hop key schedule (protocol.md §3) ----

def labelled(label, parts):
    out = label + b"\x00"
    for p in parts:
        out += struct.pack(">I", len(p)) + p
    return out

def check_ecdh(a, b):
    z = ecdh(a, b)
    assert z == ecdh(b, a), "ECDH disagrees: %s, %s" % (a, b)
    return z

def make_hop():
    name = "handshake-hop"
    agent_suite = "ecdsa-p384-sha3-384"
    broker_suite = "ecdsa-p256-sha256"
    a = SUITES[agent_suite]
    b = SUITES[broker_suite]
    henv, hmac_h, hb = a["envelope_hash"], a["mac_hash"], b["envelope_hash"]
    agent_name, role, broker_name = "architect-1", "architect", "broker-1"

    # The HELLO that returns the broker's cookie (protocol.md §3.1): HU is its first
    # 13 fields; the identity key signs T_h over HU, and the token proof is an
    # HMAC-SHA256 keyed with SHA-256(token) over the same label-and-length framing.
    token = det(name, "enrolment-token", 32)
    cookie = det(name, "broker-cookie", 40)
    hu_items = [mp_uint(3), mp_str(agent_name), mp_str(role), mp_str(agent_suite), mp_str("tpm"),
                mp_bin(der("hop-agent-identity")), mp_str("IBM"), mp_uint(1), mp_bin(der("hop-agent-ephemeral")),
                mp_bin(der("hop-agent-static")), mp_bin(det(name, "hello-nonce", 32)), mp_bin(b""), mp_bin(cookie)]
    hu = mp_array(hu_items)
    t_h = labelled(b"agentbus-v1 hello", [hu])
    t_h_digest = H(henv, t_h)
    possession = sign_digest("hop-agent-identity", a["scheme"], henv, t_h_digest)
    token_proof = hmac_tag("sha256", H("sha256", token), labelled(b"agentbus-v1 token hello", [hu]))
    hello = mp_array(hu_items + [mp_bin(possession), mp_bin(token_proof)])
    assert hello[1:len(hu)] == hu[1:] and hu[0] == 0x9d and hello[0] == 0x9f
    hello_fields = {"version": 3, "name": agent_name, "role": role, "suite": agent_suite, "protection": "tpm",
                    "identity": der("hop-agent-identity").hex(), "tpm_manufacturer": "IBM", "tpm_simulator": 1,
                    "ephemeral": der("hop-agent-ephemeral").hex(), "static_ecdh": der("hop-agent-static").hex(),
                    "nonce": det(name, "hello-nonce", 32).hex(), "evidence": "", "cookie": cookie.hex(),
                    "possession": possession.hex(), "token_proof": token_proof.hex()}
    cu_items = [mp_bin(det(name, "challenge-nonce", 32)), mp_bin(der("hop-broker-ephemeral")),
                mp_bin(der("hop-broker-static")), mp_str(broker_name), mp_bin(der("hop-broker-identity")), mp_str(hb),
                mp_bin(b"")]
    cu = mp_array(cu_items)
    t_c = labelled(b"agentbus-v1 challenge", [hello, cu])
    t_c_digest = H(hb, t_c)
    challenge_sig = sign_digest("hop-broker-identity", b["scheme"], hb, t_c_digest)
    challenge = mp_array(cu_items + [mp_bin(challenge_sig)])
    assert challenge[1:len(cu)] == cu[1:] and cu[0] == 0x97 and challenge[0] == 0x98
    challenge_fields = {"nonce": det(name, "challenge-nonce", 32).hex(), "ephemeral": der("hop-broker-ephemeral").hex(),
                        "static_ecdh": der("hop-broker-static").hex(), "broker_name": broker_name,
                        "broker_identity": der("hop-broker-identity").hex(), "broker_hash": hb, "credential": "",
                        "signature": challenge_sig.hex()}
    t_p = labelled(b"agentbus-v1 proof", [hello, challenge])
    t_p_digest = H(henv, t_p)
    proof_sig = sign_digest("hop-agent-identity", a["scheme"], henv, t_p_digest)

    # Shares: each computed by both sides (openssl pkeyutl -derive both ways).
    z_ee = check_ecdh("hop-agent-ephemeral", "hop-broker-ephemeral")
    z_se = check_ecdh("hop-agent-static", "hop-broker-ephemeral")
    z_es = check_ecdh("hop-agent-ephemeral", "hop-broker-static")
    assert len(z_ee) == len(z_se) == len(z_es) == 48
    ikm = z_ee + z_se + z_es
    salt = bytes.fromhex(hello_fields["nonce"]) + det(name, "challenge-nonce", 32)
    size = HASH_SIZES[hmac_h]
    names = bytes([len(agent_name)]) + agent_name.encode() + bytes([len(broker_name)]) + broker_name.encode()

    # The enrolment token, sealed into PROOF under output "tok" of the schedule over
    # HELLO || CHALLENGE (protocol.md §3.3): a one-time pad, then an HMAC tag.
    th_c = H(hmac_h, hello + challenge)
    info_tok = b"agentbus-v1 hop\x00" + names + th_c + b"tok"
    okm = hkdf(hmac_h, salt, ikm, info_tok, 32 + size)
    token_ct = bytes(x ^ y for x, y in zip(token, okm[:32]))
    token_tag = hmac_tag(hmac_h, okm[32:], b"agentbus-v1 token\x00" + token_ct)
    sealed_token = token_ct + token_tag
    proof = mp_array([mp_bin(proof_sig), mp_bin(sealed_token), mp_bin(b"")])

    th = H(hmac_h, hello + challenge + proof)
    base = b"agentbus-v1 hop\x00" + names + th
    info = {t: base + t.encode() for t in ("i2r", "r2i", "sid")}
    k_a2b = hkdf(hmac_h, salt, ikm, info["i2r"], size)
    k_b2a = hkdf(hmac_h, salt, ikm, info["r2i"], size)
    sid = hkdf(hmac_h, salt, ikm, info["sid"], 16)
    rekey_messages, rekey_seconds = 1000000, 3600
    confirm_input = (b"agentbus-v1 welcome\x00" + th + rekey_messages.to_bytes(8, "big") +
                     rekey_seconds.to_bytes(8, "big"))
    confirm = hmac_tag(hmac_h, k_b2a, confirm_input)
    welcome = mp_array([mp_bin(sid), mp_bin(confirm), mp_uint(rekey_messages), mp_uint(rekey_seconds)])

    return {"kind": "handshake-hop", "name": name,
            "description": "enrolment of architect-1 (ecdsa-p384-sha3-384: H_env SHA3-384, HMAC-SHA384, ECDH P-384) "
                           "at broker-1 (identity ecdsa-p256-sha256: H_b SHA-256), both with static ECDH keys",
            "agent": {"name": agent_name, "role": role, "suite": suite_json(agent_suite),
                      "identity": key_json("hop-agent-identity"), "ephemeral": key_json("hop-agent-ephemeral"),
                      "static_ecdh": key_json("hop-agent-static")},
            "broker": {"name": broker_name, "identity_suite": suite_json(broker_suite),
                       "identity": key_json("hop-broker-identity"), "ephemeral": key_json("hop-broker-ephemeral"),
                       "static_ecdh": key_json("hop-broker-static")},
            "hello": {"fields": hello_fields, "unsigned_body": hu.hex(), "body": hello.hex(), "t_h": t_h.hex(),
                      "t_h_digest": t_h_digest.hex(), "token_hash": H("sha256", token).hex()},
            "challenge": {"fields": challenge_fields, "unsigned_body": cu.hex(), "body": challenge.hex()},
            "t_c": t_c.hex(), "t_c_digest": t_c_digest.hex(),
            "proof": {"signature": proof_sig.hex(), "body": proof.hex(),
                      "token": {"token": token.hex(), "th_c": th_c.hex(), "info": info_tok.hex(), "okm": okm.hex(),
                                "sealed": sealed_token.hex()}},
            "t_p": t_p.hex(), "t_p_digest": t_p_digest.hex(),
            "ecdh": {"z_ee": z_ee.hex(), "z_se": z_se.hex(), "z_es": z_es.hex()},
            "key_schedule": {"hash": hmac_h, "ikm": ikm.hex(), "salt": salt.hex(), "th": th.hex(),
                             "info_i2r": info["i2r"].hex(), "info_r2i": info["r2i"].hex(), "info_sid": info["sid"].hex(),
                             "k_a2b": k_a2b.hex(), "k_b2a": k_b2a.hex(), "sid": sid.hex()},
            "welcome": {"confirm_input": confirm_input.hex(), "confirm": confirm.hex(),
                        "rekey_after_messages": rekey_messages, "rekey_after_seconds": rekey_seconds,
                        "body": welcome.hex()}}

# ---- Agent↔agent session offer/accept and keys (protocol.md §4) ----

def session_envelope(name, suite_name, key, header):
    """A signed control envelope with a hop MAC and no end-to-end MAC (protocol.md §4)."""
    suite = SUITES[suite_name]
    eh, mh = suite["envelope_hash"], suite["mac_hash"]
    signed = encode_signed(header)
    digest = H(eh, signed)
    auth = new_auth("tpm", key, sign_digest(key, suite["scheme"], eh, digest), None)
    hop_key = det(name, "hop-key", HASH_SIZES[mh])
    hop_in = hop_mac_input(digest, auth)
    tag = hmac_tag(mh, hop_key, hop_in)
    sid = det(name, "hop-session", 16)
    auth["hop_mac"] = {"session_id": sid.hex(), "tag": tag.hex()}
    return {"suite": suite_json(suite_name), "public_key_pem": read(key_file(key, True)), "header": header,
            "signed_part": signed.hex(), "digest": digest.hex(), "auth": auth, "auth_part": encode_auth(auth).hex(),
            "hop_mac": {"key": hop_key.hex(), "session_id": sid.hex(), "input": hop_in.hex(), "tag": tag.hex()}}

def make_e2e():
    name = "handshake-e2e"
    i_name, r_name = "monitor-1", "architect-1"
    i_suite, r_suite = "ecdsa-p256-sha256", "ecdsa-p384-sha3-384"
    curve = "P-384"  # the stronger of P-256 and P-384
    mac_i, mac_r = SUITES[i_suite]["mac_hash"], SUITES[r_suite]["mac_hash"]
    h_t = mac_i if HASH_SIZES[mac_i] >= HASH_SIZES[mac_r] else mac_r

    offer_nonce = det(name, "offer-nonce", 32)
    # Each side's policy requires the other's role attested: the offer carries a
    # credential for the responder's AK, the accept one for the initiator's (protocol.md
    # §4.3). Their bytes have the form of TPM2B_ID_OBJECT (integrity HMAC, encrypted
    # identity) || TPM2B_ENCRYPTED_SECRET (a 2048-bit OAEP output) but stand-in content:
    # RSA-OAEP is randomised, and the key schedule takes only their secrets A_R, A_I and
    # the transcript. The construction itself is checked against tpm2_makecredential in
    # tests/attestation_test.cpp.
    def credential(label):
        id_object = b"\x00\x20" + det(name, label + "/hmac", 32) + det(name, label + "/enc-identity", 34)
        seed = det(name, label + "/encrypted-seed", 256)
        return len(id_object).to_bytes(2, "big") + id_object + len(seed).to_bytes(2, "big") + seed
    offer_credential = credential("offer-credential")
    a_r = det(name, "offer-credential-secret", 32)
    accept_credential = credential("accept-credential")
    a_i = det(name, "accept-credential-secret", 32)
    offer_fields = {"ephemeral": der("e2e-initiator-ephemeral").hex(), "nonce": offer_nonce.hex(), "curve": curve,
                    "rekey_of": "", "static_ecdh": "", "credential": offer_credential.hex()}
    offer_body = mp_array([mp_bin(der("e2e-initiator-ephemeral")), mp_bin(offer_nonce), mp_str(curve), mp_bin(b""),
                           mp_bin(b""), mp_bin(offer_credential)])
    offer_id = det(name, "offer/message_id", 16)
    offer = session_envelope(name + "/offer", i_suite, "e2e-initiator-identity", header_of(name + "/offer", {
        "type": "control", "message_id": offer_id, "correlation_id": b"", "sender": i_name, "to_kind": "agent",
        "to": r_name, "sequence": 900, "timestamp_ms": 1767225608000, "suite": i_suite,
        "content_type": "application/agentbus-session-offer", "headers": [], "payload": offer_body}))
    accept_nonce = det(name, "accept-nonce", 32)
    accept_fields = {"ephemeral": der("e2e-responder-ephemeral").hex(), "nonce": accept_nonce.hex(),
                     "offer_id": offer_id.hex(), "static_ecdh": der("e2e-responder-static").hex(),
                     "credential": accept_credential.hex()}
    accept_body = mp_array([mp_bin(der("e2e-responder-ephemeral")), mp_bin(accept_nonce), mp_bin(offer_id),
                            mp_bin(der("e2e-responder-static")), mp_bin(accept_credential)])
    accept = session_envelope(name + "/accept", r_suite, "e2e-responder-identity", header_of(name + "/accept", {
        "type": "control", "message_id": det(name, "accept/message_id", 16), "correlation_id": offer_id,
        "sender": r_name, "to_kind": "agent", "to": i_name, "sequence": 77, "timestamp_ms": 1767225608040,
        "suite": r_suite, "content_type": "application/agentbus-session-accept", "headers": [],
        "payload": accept_body}))
    offer["body"] = {"fields": offer_fields, "bytes": offer_body.hex()}
    accept["body"] = {"fields": accept_fields, "bytes": accept_body.hex()}

    z_ee = check_ecdh("e2e-initiator-ephemeral", "e2e-responder-ephemeral")
    z_es = check_ecdh("e2e-initiator-ephemeral", "e2e-responder-static")
    ikm = z_ee + z_es + a_r + a_i  # no Z_se: the offer carries no static key
    transcript = bytes.fromhex(offer["signed_part"]) + bytes.fromhex(accept["signed_part"])
    th = H(h_t, transcript)
    salt = offer_nonce + accept_nonce
    base = (b"agentbus-v1 e2e\x00" + bytes([len(i_name)]) + i_name.encode() + bytes([len(r_name)]) +
            r_name.encode() + th)
    info = {t: base + t.encode() for t in ("i2r", "r2i", "sid")}
    k_i2r = hkdf(h_t, salt, ikm, info["i2r"], HASH_SIZES[mac_i])
    k_r2i = hkdf(h_t, salt, ikm, info["r2i"], HASH_SIZES[mac_r])
    sid = hkdf(h_t, salt, ikm, info["sid"], 16)
    return {"kind": "handshake-e2e", "name": name,
            "description": "session of initiator monitor-1 (ecdsa-p256-sha256, HMAC-SHA256) with responder "
                           "architect-1 (ecdsa-p384-sha3-384, HMAC-SHA384) on P-384; only the responder has a "
                           "static ECDH key, and each side requires the other's role attested: the offer carries "
                           "a credential for the responder's AK, the accept one for the initiator's, so IKM = "
                           "Z_ee || Z_es || A_R || A_I",
            "session_curve": curve,
            "initiator": {"name": i_name, "suite": suite_json(i_suite), "identity": key_json("e2e-initiator-identity"),
                          "ephemeral": key_json("e2e-initiator-ephemeral"), "static_ecdh": None},
            "responder": {"name": r_name, "suite": suite_json(r_suite), "identity": key_json("e2e-responder-identity"),
                          "ephemeral": key_json("e2e-responder-ephemeral"),
                          "static_ecdh": key_json("e2e-responder-static")},
            "offer": offer, "accept": accept, "transcript": transcript.hex(),
            "ecdh": {"z_ee": z_ee.hex(), "z_se": None, "z_es": z_es.hex()},
            "credential_secrets": {"a_r": a_r.hex(), "a_i": a_i.hex()},
            "key_schedule": {"hash": h_t, "ikm": ikm.hex(), "salt": salt.hex(), "th": th.hex(),
                             "info_i2r": info["i2r"].hex(), "info_r2i": info["r2i"].hex(), "info_sid": info["sid"].hex(),
                             "k_i2r": k_i2r.hex(), "k_i2r_mac_hash": mac_i, "k_r2i": k_r2i.hex(),
                             "k_r2i_mac_hash": mac_r, "sid": sid.hex()}}

def write(name, vec):
    path = os.path.join(OUT, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(vec, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("make-envelope-vectors: wrote " + path)

for v in VECTORS:
    write(v["name"], make(v))
write("wire-batch-mac", make_wire_batch())
write("negative", make_negative())
write("handshake-hop", make_hop())
write("handshake-e2e", make_e2e())
PYTHON
