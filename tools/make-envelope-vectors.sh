#!/usr/bin/env bash
# make-envelope-vectors.sh — regenerates the envelope known-answer vectors in
# schemas/vectors/ (schemas/vectors/README.md says what they contain).
#
# It is an implementation of schemas/envelope.md independent of libagentbus: bash,
# the openssl CLI (keys, key ids, signatures) and python3 with only its standard
# library (MessagePack encoding, SHA-2/SHA-3, HMAC, Merkle tree). The C++ codec
# must reproduce its bytes exactly (tests/envelope_vectors_test.cpp).
#
# Keys are generated once and reused while their files exist, so a rerun changes only
# the signatures (ECDSA and RSA-PSS are randomised); every other value is derived
# deterministically from the vector's name.
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
make_key p256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve
make_key p384 -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve
make_key rsa3072 -algorithm RSA -pkeyopt rsa_keygen_bits:3072

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

# ---- MessagePack, canonical (smallest) forms only: schemas/envelope.md "Encoding" ----

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

def H(name, data):
    return hashlib.new(HASHES[name], data).digest()

def encode_signed(h):
    return mp_array([
        mp_uint(h["version"]), mp_uint(TYPES[h["type"]]), mp_bin(bytes.fromhex(h["message_id"])),
        mp_bin(bytes.fromhex(h["correlation_id"])), mp_str(h["sender"]), mp_uint(TO_KINDS[h["to_kind"]]),
        mp_str(h["to"]), mp_uint(h["sequence"]), mp_uint(h["timestamp_ms"]), mp_str(h["suite"]),
        mp_str(h["content_type"]), mp_map([(mp_str(k), mp_str(v)) for k, v in h["headers"]]),
        mp_bin(bytes.fromhex(h["payload"])),
    ])

def encode_auth(a):
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
    return mp_array([mp_uint(a["version"]), mp_str(a["assurance"]), mp_bin(bytes.fromhex(a["key_id"])),
                     mp_bin(bytes.fromhex(a["signature"])), batch, hop, e2e])

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

# ---- openssl CLI ----

def run(*args, data=None):
    return subprocess.run(args, input=data, check=True, capture_output=True).stdout

def pss_opts(hash_name):
    return ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:" + hash_name,
            "-pkeyopt", "rsa_mgf1_md:" + hash_name]

def sign_digest(key, scheme, hash_name, digest):
    with tempfile.TemporaryDirectory() as tmp:
        dgst = os.path.join(tmp, "dgst")
        sig = os.path.join(tmp, "sig")
        with open(dgst, "wb") as f: f.write(digest)
        extra = []
        if scheme == "rsa-pss":
            extra = pss_opts(hash_name) + ["-pkeyopt", "rsa_pss_saltlen:digest"]
        run("openssl", "pkeyutl", "-sign", "-inkey", os.path.join(KEYS, key + ".key.pem"), "-in", dgst, "-out", sig, *extra)
        # Check with the CLI too, as a third party would (PSS: any salt length).
        extra = pss_opts(hash_name) + ["-pkeyopt", "rsa_pss_saltlen:auto"] if scheme == "rsa-pss" else []
        run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", os.path.join(KEYS, key + ".pub.pem"),
            "-in", dgst, "-sigfile", sig, *extra)
        with open(sig, "rb") as f: return f.read()

def key_id(key):
    der = run("openssl", "pkey", "-pubin", "-in", os.path.join(KEYS, key + ".pub.pem"), "-outform", "DER")
    return hashlib.sha256(der).digest()

def read(path):
    with open(path) as f: return f.read()

# ---- Deterministic field values ----

def det(name, label, n):
    return hashlib.shake_256((name + "/" + label).encode()).digest(n)

SUITES = {
    "ecdsa-p256-sha256":   {"scheme": "ecdsa",   "key": "p256",    "curve": "P-256", "rsa_bits": 0,    "envelope_hash": "sha256",   "mac_hash": "sha256"},
    "ecdsa-p384-sha3-384": {"scheme": "ecdsa",   "key": "p384",    "curve": "P-384", "rsa_bits": 0,    "envelope_hash": "sha3-384", "mac_hash": "sha384"},
    "rsa3072-pss-sha384":  {"scheme": "rsa-pss", "key": "rsa3072", "curve": "",      "rsa_bits": 3072, "envelope_hash": "sha384",   "mac_hash": "sha384"},
    "ecdsa-p256-sha3-256": {"scheme": "ecdsa",   "key": "p256",    "curve": "P-256", "rsa_bits": 0,    "envelope_hash": "sha3-256", "mac_hash": "sha256"},
}

VECTORS = [
    {"name": "ecdsa-p256-sha256-topic", "suite": "ecdsa-p256-sha256", "assurance": "tpm",
     "type": "data", "sender": "monitor-1", "to_kind": "topic", "to": "metrics/cpu.load", "correlated": False,
     "sequence": 42, "timestamp_ms": 1767225600123, "content_type": "application/json",
     "headers": [["trace-id", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"], ["priority", "high"]],
     "payload": b'{"cpu":0.42,"host":"node-7"}', "recipients": ["optimizer-1", "debugger-1", "monitor-2"]},
    {"name": "ecdsa-p384-sha3-384-request", "suite": "ecdsa-p384-sha3-384", "assurance": "tpm",
     "type": "request", "sender": "architect-1", "to_kind": "agent", "to": "constructor-2", "correlated": False,
     "sequence": (1 << 40) + 7, "timestamp_ms": 1767225601000, "content_type": "application/octet-stream",
     "headers": [], "payload": bytes(range(256)), "recipients": ["constructor-2"]},
    {"name": "rsa3072-pss-sha384-reply", "suite": "rsa3072-pss-sha384", "assurance": "tpm",
     "type": "reply", "sender": "director-1", "to_kind": "agent", "to": "security-1", "correlated": True,
     "sequence": 300, "timestamp_ms": 1767225602500, "content_type": "text/plain; charset=utf-8",
     "headers": [["lang", "de"], ["note", "Grüße ✓"]], "payload": "approved: Änderung 17".encode(),
     "recipients": ["security-1"]},
    {"name": "ecdsa-p256-sha3-256-control", "suite": "ecdsa-p256-sha3-256", "assurance": "software",
     "type": "control", "sender": "worker.7_b", "to_kind": "agent", "to": "broker", "correlated": False,
     "sequence": 70000, "timestamp_ms": 0, "content_type": "", "headers": [], "payload": b"",
     "recipients": ["broker"]},
    {"name": "ecdsa-p256-sha256-batch", "suite": "ecdsa-p256-sha256", "assurance": "tpm-batch",
     "type": "error", "sender": "monitor-1", "to_kind": "agent", "to": "director-1", "correlated": True,
     "sequence": 43, "timestamp_ms": 1767225603000, "content_type": "application/json",
     "headers": [["code", "503"]], "payload": b'{"error":"disk full"}', "recipients": ["director-1"],
     "batch": {"leaf_index": 2, "leaf_count": 5}},
]

def make(v):
    name = v["name"]
    suite = SUITES[v["suite"]]
    eh, mh = suite["envelope_hash"], suite["mac_hash"]
    header = {
        "version": 1, "type": v["type"], "message_id": det(name, "message_id", 16).hex(),
        "correlation_id": det(name, "correlation_id", 16).hex() if v["correlated"] else "",
        "sender": v["sender"], "to_kind": v["to_kind"], "to": v["to"], "sequence": v["sequence"],
        "timestamp_ms": v["timestamp_ms"], "suite": v["suite"], "content_type": v["content_type"],
        "headers": v["headers"], "payload": v["payload"].hex(),
    }
    signed = encode_signed(header)
    digest = H(eh, signed)
    vec = {"name": name, "description": "", "suite": v["suite"],
           "signature_scheme": suite["scheme"], "curve": suite["curve"], "rsa_bits": suite["rsa_bits"],
           "envelope_hash": eh, "mac_hash": mh,
           "private_key_pem": read(os.path.join(KEYS, suite["key"] + ".key.pem")),
           "public_key_pem": read(os.path.join(KEYS, suite["key"] + ".pub.pem")),
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
        vec["description"] = "tpm-batch: the signature covers the Merkle root, not the digest"
    else:
        vec["description"] = "direct: the signature covers the envelope digest"

    auth = {"version": 1, "assurance": v["assurance"], "key_id": key_id(suite["key"]).hex(),
            "signature": sign_digest(suite["key"], suite["scheme"], eh, signed_value).hex(),
            "batch": batch, "hop_mac": None, "e2e_macs": []}

    hop_key = det(name, "hop-key", 32 if mh == "sha256" else 48)
    hop_in = hop_mac_input(digest, auth)
    hop_tag = hmac.new(hop_key, hop_in, HASHES[mh]).digest()
    vec["hop_mac"] = {"key": hop_key.hex(), "session_id": det(name, "hop-session", 16).hex(),
                      "input": hop_in.hex(), "tag": hop_tag.hex()}
    e2e = []
    for r in v["recipients"]:
        k = det(name, "e2e-key/" + r, 32 if mh == "sha256" else 48)
        data = e2e_mac_input(digest, auth, r)
        e2e.append({"recipient": r, "key": k.hex(), "session_id": det(name, "e2e-session/" + r, 16).hex(),
                    "input": data.hex(), "tag": hmac.new(k, data, HASHES[mh]).digest().hex()})
    vec["e2e_macs"] = e2e

    # The MACs are over the signature, not over each other, so the auth part is
    # assembled last.
    auth["hop_mac"] = {"session_id": vec["hop_mac"]["session_id"], "tag": hop_tag.hex()}
    auth["e2e_macs"] = [{"recipient": m["recipient"], "session_id": m["session_id"], "tag": m["tag"]} for m in e2e]
    vec["auth"] = auth
    vec["auth_part"] = encode_auth(auth).hex()
    return vec

for v in VECTORS:
    path = os.path.join(OUT, v["name"] + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(make(v), f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("make-envelope-vectors: wrote " + path)
PYTHON
