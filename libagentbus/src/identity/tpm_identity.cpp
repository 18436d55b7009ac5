#include "identity/identities.hpp"

#include <spdlog/spdlog.h>

namespace agentbus {
namespace fs = std::filesystem;

void tpm_identity::save_blob(const fs::path& dir, const tpm::key_blob& blob) {
  write_binary_file(dir / kTpmPublicFile, blob.public_area, 0644);
  // The private area is encrypted by the TPM's storage key; 0600 all the same.
  write_binary_file(dir / kTpmPrivateFile, blob.private_area, 0600);
}

std::unique_ptr<identity_key> tpm_identity::load(const fs::path& dir, identity_metadata meta, std::shared_ptr<tpm::tpm> t) {
  std::string storage_name = to_hex(t->storage_key_name());
  if (storage_name != meta.tpm_storage_name)
    throw identity_error(dir.string() + " was created under another TPM storage key (another TPM, or its owner "
                         "hierarchy was cleared): expected " + meta.tpm_storage_name + ", TPM at " + t->tcti() +
                         " has " + storage_name);
  tpm::key_blob blob;
  blob.type = meta.key_suite.key;
  blob.scheme_hash = tpm::scheme_hash_for(meta.key_suite.envelope_hash);
  blob.public_area = read_binary_file(dir / kTpmPublicFile);
  blob.private_area = read_binary_file(dir / kTpmPrivateFile);
  auto pub = tpm::tpm::public_key_of(blob);
  if (!pub) throw identity_error(dir.string() + "/key.pub: " + pub.error().to_string());
  if (pub->type() != meta.key_suite.key)
    throw identity_error(dir.string() + ": key.pub is " + pub->type().describe() + ", identity.toml says " +
                         meta.key_suite.key.describe());
  auto id = std::make_unique<tpm_identity>(std::move(meta), std::move(pub).value(), std::move(t), std::move(blob));
  id->dir_ = dir;
  return id;
}

result<const tpm::key_blob*> tpm_identity::load_or_create_ecdh(ec_curve curve) {
  std::string base = "ecdh-" + std::string(curve_name(curve));
  tpm::key_blob blob;
  try {
    if (fs::exists(dir_ / (base + ".pub"))) {
      blob.type = key_type{signature_scheme::ecdsa, 0, curve};
      blob.ecdh = true;
      blob.public_area = read_binary_file(dir_ / (base + ".pub"));
      blob.private_area = read_binary_file(dir_ / (base + ".priv"));
      if (auto pub = tpm::tpm::public_key_of(blob); !pub || pub->type() != blob.type)
        return status{status_code::invalid_field,
                      (dir_ / (base + ".pub")).string() + " is not an ECDH key on " + std::string(curve_name(curve))};
    } else {
      auto created = tpm_->create_ecdh_key(curve);
      if (!created) return created.error();
      blob = std::move(created).value();
      write_binary_file(dir_ / (base + ".pub"), blob.public_area, 0644);
      write_binary_file(dir_ / (base + ".priv"), blob.private_area, 0600);
    }
  } catch (const std::exception& e) {
    // A key directory that cannot be read or written, or a TPM that stopped answering:
    // the session goes on without the static share, and the caller says so.
    return status{status_code::tpm_unavailable, e.what()};
  }
  return &ecdh_blobs_.emplace(curve, std::move(blob)).first->second;
}

result<const tpm::key_blob*> tpm_identity::ecdh_blob(ec_curve curve) {
  std::lock_guard lock(ecdh_mutex_);
  if (auto it = ecdh_blobs_.find(curve); it != ecdh_blobs_.end()) return &it->second;
  if (dir_.empty()) return static_cast<const tpm::key_blob*>(nullptr);
  const auto now = std::chrono::steady_clock::now();
  if (auto failed = ecdh_failures_.find(curve); failed != ecdh_failures_.end()) {
    if (now - failed->second.second < kStaticEcdhRetry) return failed->second.first;
    ecdh_failures_.erase(failed);
  }
  auto blob = load_or_create_ecdh(curve);
  if (!blob) {
    spdlog::error("identity {}: no static ECDH key on {}: {}; sessions on that curve fall back to ephemeral ECDH "
                  "(trying again in {} s)",
                  metadata().fingerprint.substr(0, 16), curve_name(curve), blob.error().to_string(),
                  kStaticEcdhRetry.count());
    ecdh_failures_[curve] = {blob.error(), now};
  }
  return blob;
}

result<std::optional<crypto::public_key>> tpm_identity::static_ecdh_public(ec_curve curve) {
  auto blob = ecdh_blob(curve);
  if (!blob) return blob.error();
  if (*blob == nullptr) return std::optional<crypto::public_key>{};
  auto pub = tpm::tpm::public_key_of(**blob);
  if (!pub) return pub.error();
  return std::optional<crypto::public_key>(std::move(pub).value());
}

result<secret_bytes> tpm_identity::static_ecdh(ec_curve curve, const crypto::public_key& peer) {
  auto blob = ecdh_blob(curve);
  if (!blob) return blob.error();
  if (*blob == nullptr)
    return status{status_code::unsupported_algorithm, "no static ECDH key on " + std::string(curve_name(curve))};
  return tpm_->ecdh_zgen(**blob, peer);
}

result<const tpm::key_blob*> tpm_identity::attestation_key_locked() {
  if (ak_) return &*ak_;
  tpm::key_blob blob;
  if (fs::exists(dir_ / "ak.pub")) {
    blob.type = key_type{signature_scheme::ecdsa, 0, ec_curve::p256};
    blob.public_area = read_binary_file(dir_ / "ak.pub");
    blob.private_area = read_binary_file(dir_ / "ak.priv");
  } else {
    auto created = tpm_->create_attestation_key();
    if (!created) return created.error();
    blob = std::move(created).value();
    write_binary_file(dir_ / "ak.pub", blob.public_area, 0644);
    write_binary_file(dir_ / "ak.priv", blob.private_area, 0600);
  }
  ak_ = std::move(blob);
  return &*ak_;
}

result<std::optional<tpm::key_evidence>> tpm_identity::attestation_evidence(ec_curve curve) {
  std::lock_guard lock(attest_mutex_);
  if (auto it = evidence_.find(curve); it != evidence_.end()) return std::optional<tpm::key_evidence>(it->second);
  if (dir_.empty() || no_endorsement_) return std::optional<tpm::key_evidence>{};
  try {
    auto ek = tpm_->read_endorsement();
    if (!ek) {
      if (ek.error().code() != status_code::not_attested) return ek.error();
      spdlog::warn("identity {}: the TPM at {} has no endorsement key certificate ({}): its keys cannot be attested",
                   metadata().fingerprint.substr(0, 16), tpm_->tcti(), ek.error().detail());
      no_endorsement_ = true;
      return std::optional<tpm::key_evidence>{};
    }
    auto ak = attestation_key_locked();
    if (!ak) return ak.error();
    tpm::key_evidence e;
    e.ek = std::move(ek).value();
    e.ak_public = (*ak)->public_area;
    e.identity_public = blob_.public_area;
    // Qualifying data empty: the certification states a lasting fact (this key lives
    // in this TPM); freshness comes from the credential the verifier wraps per handshake.
    auto ci = tpm_->certify(blob_, **ak, {});
    if (!ci) return ci.error();
    e.identity = std::move(ci).value();
    auto ecdh = ecdh_blob(curve);
    if (ecdh && *ecdh != nullptr) {
      auto ce = tpm_->certify(**ecdh, **ak, {});
      if (!ce) return ce.error();
      e.ecdh_public = (*ecdh)->public_area;
      e.ecdh = std::move(ce).value();
    }
    return std::optional<tpm::key_evidence>(evidence_.emplace(curve, std::move(e)).first->second);
  } catch (const identity_error& e) {
    return status{status_code::io_error, e.what()};
  }
}

result<secret_bytes> tpm_identity::activate_credential(byte_view credential) {
  const tpm::key_blob* ak = nullptr;
  {
    std::lock_guard lock(attest_mutex_);
    if (!ak_) return status{status_code::not_attested, "this identity presented no attestation key"};
    ak = &*ak_;  // set once, never reset
  }
  if (credential.size() < 4) return status{status_code::malformed, "credential too short"};
  const std::size_t id_len = 2 + (std::size_t{credential[0]} << 8 | credential[1]);
  if (id_len + 2 > credential.size()) return status{status_code::malformed, "credential does not hold two TPM2Bs"};
  return tpm_->activate_credential(*ak, credential.first(id_len), credential.subspan(id_len));
}

result<bytes> tpm_identity::sign_digest(byte_view digest) {
  if (digest.size() != hash_size(key_suite().envelope_hash))
    return status{status_code::invalid_field, "digest length does not match " + std::string(hash_name(key_suite().envelope_hash))};
  return tpm_->sign_digest(blob_, digest);
}

}  // namespace agentbus
