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

result<bytes> tpm_identity::sign_digest(byte_view digest) {
  if (digest.size() != hash_size(key_suite().envelope_hash))
    return status{status_code::invalid_field, "digest length does not match " + std::string(hash_name(key_suite().envelope_hash))};
  return tpm_->sign_digest(blob_, digest);
}

}  // namespace agentbus
