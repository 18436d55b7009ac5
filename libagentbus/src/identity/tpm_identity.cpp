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
  return std::make_unique<tpm_identity>(std::move(meta), std::move(pub).value(), std::move(t), std::move(blob));
}

result<bytes> tpm_identity::sign_digest(byte_view digest) {
  if (digest.size() != hash_size(key_suite().envelope_hash))
    return status{status_code::invalid_field, "digest length does not match " + std::string(hash_name(key_suite().envelope_hash))};
  return tpm_->sign_digest(blob_, digest);
}

}  // namespace agentbus
