// tpm_device.hpp — synchronous TPM operations on one ESAPI context (internal).
// Not thread-safe: exactly one thread (the tpm worker) uses a tpm_device.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "agentbus/tpm.hpp"
#include "tpm/esys_context.hpp"

namespace agentbus::tpm {

class tpm_device {
 public:
  // Opens the TCTI and creates the storage primary. Throws tpm_error.
  explicit tpm_device(std::string tcti);

  const std::string& tcti() const noexcept { return ctx_.tcti(); }
  tpm_info info();
  status check_key_type(const key_type& type);
  result<key_blob> create_signing_key(const key_type& type, hash_algorithm digest_hash);
  result<key_blob> create_ecdh_key(ec_curve curve);
  result<bytes> sign_digest(const key_blob& key, byte_view digest);
  result<secret_bytes> ecdh_zgen(const key_blob& key, const crypto::public_key& peer);
  void pcr_extend(unsigned index, hash_algorithm bank, byte_view digest);
  bytes pcr_read(unsigned index, hash_algorithm bank);
  bytes storage_key_name();
  // Attestation (tpm_attestation.cpp).
  result<endorsement> read_endorsement();
  result<key_blob> create_attestation_key();
  result<certification> certify(const key_blob& key, const key_blob& ak, byte_view qualifying_data);
  result<secret_bytes> activate_credential(const key_blob& ak, byte_view id_object, byte_view encrypted_secret);

  // observe_key_traffic sets who is told of the key cache's own TPM work, one call
  // each: "key_load" (a blob that was not loaded) and "key_flush" (a key evicted to
  // free a slot), with its duration and whether the TPM accepted it. The worker
  // records them as operations of their own (tpm_op_stats), since they are what
  // keeping keys loaded saves and what the three object slots cost.
  using key_traffic_observer = std::function<void(const char* op, std::chrono::nanoseconds took, bool ok)>;
  void observe_key_traffic(key_traffic_observer observer) { key_traffic_ = std::move(observer); }

 private:
  result<key_blob> create_under_srk(const TPM2B_PUBLIC& tmpl, key_blob meta);
  // load returns the handle of a loaded blob, loading it (and evicting the least
  // recently used one) if needed. Keys stay loaded across signatures: a Load costs
  // about as much as an ECDSA signature on swtpm.
  result<ESYS_TR> load(const key_blob& key);
  // flush_stale_transients flushes every transient object the TPM reports (after a
  // killed process left its keys loaded); returns how many.
  std::size_t flush_stale_transients();
  // evict_down_to flushes least recently used keys until at most `keep` remain.
  void evict_down_to(std::size_t keep);
  std::vector<std::uint32_t> fixed_properties(std::uint32_t first, std::uint32_t count);
  // handle_exists asks the TPM (GetCapability HANDLES) whether a persistent object or
  // NV index exists, so that probing for an optional one (the EK, its certificate)
  // does not make tpm2-tss log an error for what is an answer.
  bool handle_exists(std::uint32_t handle);
  // read_nv reads a whole NV index with owner authorisation, in chunks.
  result<bytes> read_nv(std::uint32_t index);

  esys_context ctx_;
  transient_object srk_;
  struct loaded_key {
    bytes public_area;  // identifies the blob
    transient_object object;
    std::uint64_t last_use = 0;
  };
  static constexpr std::size_t kMaxLoadedKeys = 2;  // plus the SRK: 3 slots
  std::vector<loaded_key> loaded_;
  std::uint64_t use_clock_ = 0;
  key_traffic_observer key_traffic_;
  void note_key_traffic(const char* op, std::chrono::steady_clock::time_point started, bool ok) {
    if (key_traffic_) key_traffic_(op, std::chrono::steady_clock::now() - started, ok);
  }
};

}  // namespace agentbus::tpm
