// merkle_bench — batch signing's tree: building it over N envelope digests (what a
// signer does once per batch, N leaf hashes + N−1 node hashes), extracting one
// envelope's proof, and recomputing the root from a proof (what a verifier does per
// envelope before its cached-root lookup). items/s counts leaves for build,
// proofs otherwise.
#include <benchmark/benchmark.h>

#include <optional>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "agentbus/crypto.hpp"
#include "envelope/merkle.hpp"

namespace agentbus {
namespace {

std::vector<bytes> leaves(hash_algorithm h, std::size_t n) {
  std::vector<bytes> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(crypto::digest(h, as_bytes("envelope " + std::to_string(i))));
  return out;
}

void BM_MerkleBuild(benchmark::State& state, hash_algorithm h) {
  const auto ds = leaves(h, static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto t = merkle::tree::build(h, ds);  // copies the digests, as a signer that keeps them would
    benchmark::DoNotOptimize(t.root().data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK_CAPTURE(BM_MerkleBuild, sha256, hash_algorithm::sha256)->Arg(16)->Arg(256)->Arg(4096);
BENCHMARK_CAPTURE(BM_MerkleBuild, sha3_384, hash_algorithm::sha3_384)->Arg(16)->Arg(256)->Arg(4096);

void BM_MerkleProof(benchmark::State& state, hash_algorithm h) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto t = merkle::tree::build(h, leaves(h, n));
  std::uint32_t i = 0;
  for (auto _ : state) {
    batch_proof p = t.proof(i);
    benchmark::DoNotOptimize(p.path.data());
    i = (i + 7) % n;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_MerkleProof, sha256, hash_algorithm::sha256)->Arg(16)->Arg(256)->Arg(4096);

void BM_MerkleRootFromProof(benchmark::State& state, hash_algorithm h) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto ds = leaves(h, n);
  const auto t = merkle::tree::build(h, ds);
  std::vector<batch_proof> proofs;
  for (std::uint32_t i = 0; i < n; ++i) proofs.push_back(t.proof(i));
  std::uint32_t i = 0;
  for (auto _ : state) {
    auto root = merkle::root_from_proof(h, ds[i], proofs[i]);
    if (!root.ok()) {
      state.SkipWithError(root.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(root->data());
    i = (i + 7) % n;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_MerkleRootFromProof, sha256, hash_algorithm::sha256)->Arg(16)->Arg(256)->Arg(4096);
BENCHMARK_CAPTURE(BM_MerkleRootFromProof, sha3_384, hash_algorithm::sha3_384)->Arg(16)->Arg(256)->Arg(4096);

// Path verification against a verified-node table, envelopes in leaf order (how a
// batch arrives): about 2 hashes each. A fresh table every n envelopes.
void BM_MerkleVerifiedNodesInOrder(benchmark::State& state, hash_algorithm h) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const auto ds = leaves(h, n);
  const auto t = merkle::tree::build(h, ds);
  std::vector<batch_proof> proofs;
  for (std::uint32_t i = 0; i < n; ++i) proofs.push_back(t.proof(i));
  std::optional<merkle::verified_nodes> nodes;
  std::uint32_t i = 0;
  for (auto _ : state) {
    if (i == 0) nodes.emplace(h, n, t.root());
    status st = nodes->check(ds[i], proofs[i]);
    if (!st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      break;
    }
    i = (i + 1) % n;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_MerkleVerifiedNodesInOrder, sha256, hash_algorithm::sha256)->Arg(16)->Arg(256)->Arg(4096);

}  // namespace
}  // namespace agentbus
