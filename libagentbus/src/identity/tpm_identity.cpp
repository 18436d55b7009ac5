#include "identity/identities.hpp"

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

const tpm::key_blob* tpm_identity::ecdh_blob(ec_curve curve) {
  std::lock_guard lock(ecdh_mutex_);
  if (auto it = ecdh_blobs_.find(curve); it != ecdh_blobs_.end()) return &it->second;
  if (dir_.empty()) return nullptr;  // an identity created in this process has its dir set below
  std::string base = "ecdh-" + std::string(curve_name(curve));
  tpm::key_blob blob;
  if (fs::exists(dir_ / (base + ".pub"))) {
    blob.type = key_type{signature_scheme::ecdsa, 0, curve};
    blob.ecdh = true;
    blob.public_area = read_binary_file(dir_ / (base + ".pub"));
    blob.private_area = read_binary_file(dir_ / (base + ".priv"));
  } else {
    auto created = tpm_->create_ecdh_key(curve);
    if (!created) return nullptr;
    blob = std::move(created).value();
    write_binary_file(dir_ / (base + ".pub"), blob.public_area, 0644);
    write_binary_file(dir_ / (base + ".priv"), blob.private_area, 0600);
  }
  return &ecdh_blobs_.emplace(curve, std::move(blob)).first->second;
}

std::optional<crypto::public_key> tpm_identity::static_ecdh_public(ec_curve curve) {
  const tpm::key_blob* blob = ecdh_blob(curve);
  if (blob == nullptr) return std::nullopt;
  auto pub = tpm::tpm::public_key_of(*blob);
  if (!pub) return std::nullopt;
  return std::move(pub).value();
}

result<secret_bytes> tpm_identity::static_ecdh(ec_curve curve, const crypto::public_key& peer) {
  const tpm::key_blob* blob = ecdh_blob(curve);
  if (blob == nullptr) return status{status_code::unsupported_algorithm, "no static ECDH key on " + std::string(curve_name(curve))};
  return tpm_->ecdh_zgen(*blob, peer);
}

result<bytes> tpm_identity::sign_digest(byte_view digest) {
  if (digest.size() != hash_size(key_suite().envelope_hash))
    return status{status_code::invalid_field, "digest length does not match " + std::string(hash_name(key_suite().envelope_hash))};
  return tpm_->sign_digest(blob_, digest);
}

}  // namespace agentbus
