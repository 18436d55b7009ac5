// seal_open_bench — one envelope's whole crypto path, as the library and the broker
// run it (without sockets or threads): seal = encode the signed part, digest it,
// sign (software P-256: the TPM is out of process) or take a Merkle proof, MAC it
// for the hop; open = decode both parts, digest, check the hop MAC, check the
// signature (direct) or the inclusion proof against a verified batch (tpm-batch).
// Items/s are envelopes per second on one core.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "crypto/software_key.hpp"
#include "envelope/merkle.hpp"
#include "session/checks.hpp"

namespace agentbus {
namespace {

constexpr hash_algorithm kHash = hash_algorithm::sha256;
const key_type kP256{signature_scheme::ecdsa, 0, ec_curve::p256};

envelope_header header(std::size_t payload, std::uint64_t seq) {
  envelope_header h;
  h.type = envelope_type::data;
  h.message_id = bytes(kMessageIdSize, static_cast<std::uint8_t>(seq));
  h.sender = "monitor-1";
  h.to_kind = recipient_kind::agent;
  h.to = "director-1";
  h.sequence = seq;
  h.timestamp_ms = 1767225600000;
  h.suite = "ecdsa-p256-sha256";
  h.content_type = "application/octet-stream";
  h.payload = bytes(payload, 0xa5);
  return h;
}

session::mac_key hop_key() {
  session::mac_key k{bytes(16, 0x33), secret_bytes(bytes(32, 0x0b)), kHash};
  k.prepared = crypto::hmac_key(kHash, k.key.view());
  return k;
}

const crypto::software_private_key& signer() {
  static const crypto::software_private_key key = crypto::software_private_key::generate(kP256);
  return key;
}

// A sealed batch of 1024 envelopes (signed part, auth part) under one software signature.
struct sealed_batch {
  std::vector<bytes> signed_parts, auth_parts;
};
const sealed_batch& batch_of_1024(std::size_t payload) {
  static std::map<std::size_t, sealed_batch> made;
  auto it = made.find(payload);
  if (it != made.end()) return it->second;
  sealed_batch b;
  std::vector<bytes> digests;
  for (std::uint64_t i = 0; i < 1024; ++i) {
    b.signed_parts.push_back(encode_signed_part(header(payload, i)));
    digests.push_back(envelope_digest(kHash, b.signed_parts.back()));
  }
  auto t = merkle::tree::build(kHash, digests);
  bytes sig = signer().sign_digest(kHash, t.root()).value();
  const session::mac_key k = hop_key();
  for (std::uint32_t i = 0; i < 1024; ++i) {
    envelope_auth a;
    a.level = assurance::tpm_batch;
    a.key_id = signer().public_part().fingerprint();
    a.signature = sig;
    a.batch = t.proof(i);
    a.hop_mac = session_mac{"", k.session_id, session::hop_tag(k, digests[i], a)};
    b.auth_parts.push_back(encode_auth_part(a));
  }
  return made.emplace(payload, std::move(b)).first->second;
}

// seal_one: encode, digest, sign (direct: software P-256) or take the batch's shared
// signature and proof (batch member), hop MAC, encode the auth part.
bytes seal_one(std::size_t payload, std::uint64_t seq, const session::mac_key& k, const batch_proof* proof) {
  static const bytes shared_signature(71, 0x30);
  bytes signed_part = encode_signed_part(header(payload, seq));
  bytes digest = envelope_digest(kHash, signed_part);
  envelope_auth a;
  a.level = proof ? assurance::tpm_batch : assurance::software;
  a.key_id = signer().public_part().fingerprint();
  a.signature = proof ? shared_signature : signer().sign_digest(kHash, digest).value();
  if (proof) a.batch = *proof;
  a.hop_mac = session_mac{"", k.session_id, session::hop_tag(k, digest, a)};
  return encode_auth_part(a);
}

void BM_SealDirect(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  const session::mac_key k = hop_key();
  std::uint64_t seq = 0;
  for (auto _ : state) {
    bytes auth = seal_one(payload, ++seq, k, nullptr);
    benchmark::DoNotOptimize(auth.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SealDirect)->Arg(64)->Arg(1024)->Arg(16384);

// Seal in batch mode: the per-envelope part (the one root signature is shared by
// the batch and left out; Merkle build is in merkle_bench).
void BM_SealBatchMember(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  const session::mac_key k = hop_key();
  const batch_proof proof{1000, 1024, std::vector<bytes>(10, bytes(32, 0x22))};
  std::uint64_t seq = 0;
  for (auto _ : state) {
    bytes auth = seal_one(payload, ++seq, k, &proof);
    benchmark::DoNotOptimize(auth.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SealBatchMember)->Arg(64)->Arg(1024)->Arg(16384);

// Open a tpm-batch envelope the way a verifier does once the batch's root is known:
// decode, digest, hop MAC, inclusion proof (verified-node table, envelopes in order).
void BM_OpenBatchMember(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  const sealed_batch& b = batch_of_1024(payload);
  session::session_state hop;
  hop.install(hop_key(), hop_key(), std::chrono::seconds(30));
  std::unique_ptr<session::root_cache> cache;
  std::size_t i = 0;
  for (auto _ : state) {
    if (i == 0) {
      state.PauseTiming();
      cache = std::make_unique<session::root_cache>(16);  // a fresh batch every 1024: its root signature is counted
      state.ResumeTiming();
    }
    auto h = decode_signed_part(b.signed_parts[i]);
    auto a = decode_auth_part(b.auth_parts[i]);
    bytes digest = envelope_digest(kHash, b.signed_parts[i]);
    status st = session::verify_hop_mac(hop, digest, *a);
    if (st) st = session::verify_envelope_signature(signer().public_part(), suite{"ecdsa-p256-sha256", kP256, kHash, kHash, ec_curve::p256}, digest, *a, cache.get());
    if (!h || !st) {
      state.SkipWithError(st ? h.error().to_string().c_str() : st.to_string().c_str());
      break;
    }
    i = (i + 1) % 1024;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OpenBatchMember)->Arg(64)->Arg(1024)->Arg(16384);

}  // namespace
}  // namespace agentbus
