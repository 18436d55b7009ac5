// envelope_bench — the envelope codec per call: encode and decode of the signed part
// at 64 B, 1 KiB and 16 KiB payloads, decode of typical auth parts (direct, and
// tpm-batch with a 12-sibling path; the auth part never holds the payload), and the
// envelope digest. Bytes/s counts the frame, items/s envelopes.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "agentbus/crypto.hpp"
#include "agentbus/envelope.hpp"

namespace agentbus {
namespace {

envelope_header make_header(std::size_t payload_size) {
  envelope_header h;
  h.type = envelope_type::data;
  h.message_id = bytes(kMessageIdSize, 0x5c);
  h.sender = "sensor-17";
  h.to_kind = recipient_kind::topic;
  h.to = "plant/line-3/temperature";
  h.sequence = 1234567;
  h.timestamp_ms = 1767225600000;
  h.suite = "ecdsa-p256-sha256";
  h.content_type = "application/octet-stream";
  h.headers = {{"trace", "4bf92f3577b34da6a3ce929d0e0e4736"}, {"unit", "celsius"}};
  h.payload = bytes(payload_size, 0xa5);
  return h;
}

// typical_auth: an ECDSA P-256 envelope with a hop MAC and one end-to-end MAC;
// with `batch`, a tpm-batch proof of leaf 1000 of 4096 (12 siblings).
envelope_auth typical_auth(bool batch) {
  envelope_auth a;
  a.level = batch ? assurance::tpm_batch : assurance::tpm;
  a.key_id = bytes(kKeyIdSize, 0x11);
  a.signature = bytes(71, 0x30);
  if (batch) a.batch = batch_proof{1000, 4096, std::vector<bytes>(12, bytes(32, 0x22))};
  a.hop_mac = session_mac{"", bytes(16, 0x33), bytes(32, 0x44)};
  a.e2e_macs.push_back(session_mac{"director-1", bytes(16, 0x55), bytes(32, 0x66)});
  return a;
}

void BM_EncodeSignedPart(benchmark::State& state) {
  const auto header = make_header(static_cast<std::size_t>(state.range(0)));
  std::size_t size = 0;
  for (auto _ : state) {
    bytes out = encode_signed_part(header);
    size = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}
BENCHMARK(BM_EncodeSignedPart)->Arg(64)->Arg(1024)->Arg(16384);

void BM_DecodeSignedPart(benchmark::State& state) {
  const bytes frame = encode_signed_part(make_header(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto decoded = decode_signed_part(frame);
    if (!decoded.ok()) {
      state.SkipWithError(decoded.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(decoded->payload.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_DecodeSignedPart)->Arg(64)->Arg(1024)->Arg(16384);

void BM_DecodeAuthPart(benchmark::State& state) {
  const bool batch = state.range(0) != 0;
  const bytes frame = encode_auth_part(typical_auth(batch));
  state.SetLabel(batch ? "tpm-batch, 12-sibling path" : "direct");
  for (auto _ : state) {
    auto decoded = decode_auth_part(frame);
    if (!decoded.ok()) {
      state.SkipWithError(decoded.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(decoded->signature.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_DecodeAuthPart)->ArgName("batch")->Arg(0)->Arg(1);

void BM_EnvelopeDigest(benchmark::State& state, hash_algorithm h) {
  const bytes frame = encode_signed_part(make_header(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    bytes d = envelope_digest(h, frame);
    benchmark::DoNotOptimize(d.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK_CAPTURE(BM_EnvelopeDigest, sha256, hash_algorithm::sha256)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK_CAPTURE(BM_EnvelopeDigest, sha3_384, hash_algorithm::sha3_384)->Arg(64)->Arg(1024)->Arg(16384);

}  // namespace
}  // namespace agentbus
