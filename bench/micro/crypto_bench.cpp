// crypto_bench — the per-envelope crypto a verifier does: HMAC over a hop-MAC input
// of the real size (direct and tpm-batch), signature verification with
// crypto::verify_digest (ECDSA P-256, P-384, RSA-3072-PSS), and software signing
// (the software-key fallback; a TPM signs far slower).
#include <benchmark/benchmark.h>

#include <stdexcept>
#include <string>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"
#include "attestation/evidence.hpp"
#include "crypto/software_key.hpp"

namespace agentbus {
namespace {

// mac_input builds a real hop-MAC input: SHA-256 digest, 71-byte DER signature, and
// for tpm-batch a 12-sibling path (a 4096-leaf batch).
bytes mac_input(hash_algorithm h, bool batch) {
  envelope_auth a;
  a.level = batch ? assurance::tpm_batch : assurance::tpm;
  a.key_id = bytes(kKeyIdSize, 0x11);
  a.signature = bytes(71, 0x30);
  if (batch) a.batch = batch_proof{1000, 4096, std::vector<bytes>(12, bytes(hash_size(h), 0x22))};
  return hop_mac_input(bytes(hash_size(h), 0x77), a);
}

void BM_Hmac(benchmark::State& state, hash_algorithm h) {
  const bool batch = state.range(0) != 0;
  const bytes key(hash_size(h), 0x0b);
  const bytes input = mac_input(h, batch);
  state.SetLabel(std::to_string(input.size()) + " B input" + (batch ? ", tpm-batch" : ", direct"));
  for (auto _ : state) {
    bytes tag = crypto::hmac(h, key, input);
    benchmark::DoNotOptimize(tag.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_Hmac, sha256, hash_algorithm::sha256)->ArgName("batch")->Arg(0)->Arg(1);
BENCHMARK_CAPTURE(BM_Hmac, sha384, hash_algorithm::sha384)->ArgName("batch")->Arg(0)->Arg(1);

// The hot path's MAC: a session key prepared once (crypto::hmac_key), each tag from a
// copy of the keyed context. Compare with BM_Hmac (one-shot HMAC()).
void BM_HmacPrepared(benchmark::State& state, hash_algorithm h) {
  const bool batch = state.range(0) != 0;
  const crypto::hmac_key key(h, bytes(hash_size(h), 0x0b));
  const bytes input = mac_input(h, batch);
  state.SetLabel(std::to_string(input.size()) + " B input" + (batch ? ", tpm-batch" : ", direct"));
  for (auto _ : state) {
    bytes tag = key.tag(input);
    benchmark::DoNotOptimize(tag.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_HmacPrepared, sha256, hash_algorithm::sha256)->ArgName("batch")->Arg(0)->Arg(1);
BENCHMARK_CAPTURE(BM_HmacPrepared, sha384, hash_algorithm::sha384)->ArgName("batch")->Arg(0)->Arg(1);

struct signer {
  key_type type;
  hash_algorithm hash;
  crypto::software_private_key key;
  bytes digest;
  bytes signature;
};

// make_signer generates one key per algorithm (RSA-3072 takes a moment) on first use.
const signer& make_signer(const key_type& type, hash_algorithm h) {
  auto build = [&] {
    auto key = crypto::software_private_key::generate(type);
    bytes digest = crypto::digest(h, as_bytes("an envelope's signed part"));
    auto sig = key.sign_digest(h, digest);
    if (!sig.ok()) throw std::runtime_error(sig.error().to_string());
    return signer{type, h, std::move(key), std::move(digest), std::move(*sig)};
  };
  if (type.scheme == signature_scheme::rsa_pss) {
    static const signer rsa = build();
    return rsa;
  }
  if (type.curve == ec_curve::p384) {
    static const signer p384 = build();
    return p384;
  }
  static const signer p256 = build();
  return p256;
}

const key_type kP256{signature_scheme::ecdsa, 0, ec_curve::p256};
const key_type kP384{signature_scheme::ecdsa, 0, ec_curve::p384};
const key_type kRsa3072{signature_scheme::rsa_pss, 3072, ec_curve::p256};

void BM_VerifyDigest(benchmark::State& state, const key_type* type, hash_algorithm h) {
  const signer& s = make_signer(*type, h);
  const crypto::public_key& pub = s.key.public_part();
  for (auto _ : state) {
    status st = crypto::verify_digest(pub, s.type, s.hash, s.digest, s.signature);
    if (!st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_VerifyDigest, ecdsa_p256_sha256, &kP256, hash_algorithm::sha256);
BENCHMARK_CAPTURE(BM_VerifyDigest, ecdsa_p384_sha3_384, &kP384, hash_algorithm::sha3_384);
BENCHMARK_CAPTURE(BM_VerifyDigest, rsa3072_pss_sha384, &kRsa3072, hash_algorithm::sha384);

void BM_SoftwareSign(benchmark::State& state, const key_type* type, hash_algorithm h) {
  const signer& s = make_signer(*type, h);
  for (auto _ : state) {
    auto sig = s.key.sign_digest(s.hash, s.digest);
    if (!sig.ok()) {
      state.SkipWithError(sig.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(sig->data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_SoftwareSign, ecdsa_p256_sha256, &kP256, hash_algorithm::sha256);
BENCHMARK_CAPTURE(BM_SoftwareSign, ecdsa_p384_sha3_384, &kP384, hash_algorithm::sha3_384);
BENCHMARK_CAPTURE(BM_SoftwareSign, rsa3072_pss_sha384, &kRsa3072, hash_algorithm::sha384);

// What a receiver that requires a peer attested spends per session set-up until the
// peer has proven its AK (protocol.md §4.3): a credential for the AK under the peer's
// RSA-2048 EK (OAEP, KDFa, AES-CFB, HMAC), in software. The peer's side is one
// TPM2_ActivateCredential (docs/performance.md).
void BM_MakeCredentialChallenge(benchmark::State& state) {
  static const crypto::software_private_key ek =
      crypto::software_private_key::generate(key_type{signature_scheme::rsa_pss, 2048, ec_curve::p256});
  bytes ak_name{0x00, 0x0b};
  const bytes h = crypto::digest(hash_algorithm::sha256, as_bytes("an AK's public area"));
  ak_name.insert(ak_name.end(), h.begin(), h.end());
  for (auto _ : state) {
    auto c = attestation::make_challenge(ek.public_part(), ak_name);
    if (!c.ok()) {
      state.SkipWithError(c.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(c->credential.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MakeCredentialChallenge);

}  // namespace
}  // namespace agentbus
