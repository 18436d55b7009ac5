#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <spdlog/spdlog.h>
#include <sstream>
#include <toml++/toml.h>

#include "identity/identities.hpp"

namespace agentbus {
namespace fs = std::filesystem;

bytes read_binary_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw identity_error("cannot read " + file.string());
  return bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_binary_file(const fs::path& file, byte_view data, unsigned mode) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw identity_error("cannot write " + file.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw identity_error("cannot write " + file.string() + ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw identity_error("cannot write " + file.string() + ": " + std::strerror(errno));
}

void identity_key::prepare_directory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw identity_error("cannot create key directory " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  if (fs::exists(dir / kMetadataFile))
    throw identity_error(dir.string() + " already holds an identity (identity.toml); refusing to overwrite it");
}

void identity_key::write_public_pem(const fs::path& dir, const crypto::public_key& pub) {
  std::string pem = pub.pem();
  write_binary_file(dir / kPublicPemFile, as_bytes(pem), 0644);
}

void identity_key::write_metadata(const fs::path& dir, const identity_metadata& m) {
  const suite& s = m.key_suite;
  toml::table suite_table{
      {"name", s.name},
      {"signature", s.key.scheme == signature_scheme::rsa_pss ? "rsa-pss" : "ecdsa"},
      {"envelope_hash", std::string(hash_name(s.envelope_hash))},
      {"mac", "hmac-" + std::string(hash_name(s.mac_hash))},
      {"ecdh_curve", std::string(curve_name(s.ecdh_curve))},
  };
  if (s.key.scheme == signature_scheme::rsa_pss) suite_table.insert("rsa_bits", static_cast<int64_t>(s.key.rsa_bits));
  else suite_table.insert("curve", std::string(curve_name(s.key.curve)));
  toml::table doc{
      {"version", 1},
      {"role", m.role},
      {"protection", std::string(protection_name(m.key_protection))},
      {"fingerprint", m.fingerprint},
      {"suite", suite_table},
  };
  if (m.key_protection == protection::tpm) {
    doc.insert("tpm", toml::table{{"storage_key_name", m.tpm_storage_name},
                                  {"manufacturer", m.tpm_manufacturer},
                                  {"simulator", m.tpm_simulator}});
  }
  std::ostringstream out;
  out << "# agentbus identity; written by agentbus-key, read by agents.\n" << doc << "\n";
  std::string text = out.str();
  write_binary_file(dir / kMetadataFile, as_bytes(text), 0644);
}

identity_metadata identity_key::read_metadata(const fs::path& dir) {
  fs::path file = dir / kMetadataFile;
  if (!fs::exists(file)) throw identity_error("no identity in " + dir.string() + " (" + file.string() + " missing)");
  toml::table doc;
  try {
    doc = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw identity_error(file.string() + ": " + std::string(e.description()));
  }
  auto need = [&](std::optional<std::string> v, const char* field) {
    if (!v) throw identity_error(file.string() + ": " + field + ": missing or not a string");
    return *v;
  };
  identity_metadata m;
  m.role = need(doc["role"].value<std::string>(), "role");
  auto prot = parse_protection(need(doc["protection"].value<std::string>(), "protection"));
  if (!prot) throw identity_error(file.string() + ": protection: must be tpm or software");
  m.key_protection = *prot;
  m.fingerprint = need(doc["fingerprint"].value<std::string>(), "fingerprint");
  suite& s = m.key_suite;
  s.name = need(doc["suite"]["name"].value<std::string>(), "suite.name");
  std::string sig = need(doc["suite"]["signature"].value<std::string>(), "suite.signature");
  if (sig == "rsa-pss") {
    s.key.scheme = signature_scheme::rsa_pss;
    s.key.rsa_bits = static_cast<unsigned>(doc["suite"]["rsa_bits"].value_or<int64_t>(0));
    if (s.key.rsa_bits < 2048) throw identity_error(file.string() + ": suite.rsa_bits: missing or too small");
  } else if (sig == "ecdsa") {
    s.key.scheme = signature_scheme::ecdsa;
    auto c = parse_curve(need(doc["suite"]["curve"].value<std::string>(), "suite.curve"));
    if (!c) throw identity_error(file.string() + ": suite.curve: unknown curve");
    s.key.curve = *c;
  } else {
    throw identity_error(file.string() + ": suite.signature: must be rsa-pss or ecdsa");
  }
  auto h = parse_hash(need(doc["suite"]["envelope_hash"].value<std::string>(), "suite.envelope_hash"));
  std::string mac = need(doc["suite"]["mac"].value<std::string>(), "suite.mac");
  auto mh = mac.rfind("hmac-", 0) == 0 ? parse_hash(mac.substr(5)) : std::nullopt;
  auto ec = parse_curve(need(doc["suite"]["ecdh_curve"].value<std::string>(), "suite.ecdh_curve"));
  if (!h || !mh || !ec) throw identity_error(file.string() + ": suite: unknown hash, MAC or curve");
  s.envelope_hash = *h;
  s.mac_hash = *mh;
  s.ecdh_curve = *ec;
  if (m.key_protection == protection::tpm) {
    m.tpm_storage_name = need(doc["tpm"]["storage_key_name"].value<std::string>(), "tpm.storage_key_name");
    m.tpm_manufacturer = doc["tpm"]["manufacturer"].value_or<std::string>("");
    m.tpm_simulator = doc["tpm"]["simulator"].value_or(false);
  }
  return m;
}

result<std::unique_ptr<identity_key>> identity_key::create_tpm(const fs::path& dir, const std::string& role,
                                                               const suite& s, std::shared_ptr<tpm::tpm> t) {
  if (!t) throw identity_error("create_tpm needs a TPM");
  prepare_directory(dir);
  auto blob = t->create_signing_key(s.key, s.envelope_hash);
  if (!blob) return blob.error();
  auto pub = tpm::tpm::public_key_of(*blob);
  if (!pub) throw identity_error("TPM returned an unreadable public key: " + pub.error().to_string());
  tpm::tpm_info info = t->info();
  identity_metadata m;
  m.role = role;
  m.key_suite = s;
  m.key_protection = protection::tpm;
  m.fingerprint = pub->fingerprint_hex();
  m.tpm_storage_name = to_hex(t->storage_key_name());
  m.tpm_manufacturer = info.manufacturer;
  m.tpm_simulator = info.simulator;
  tpm_identity::save_blob(dir, *blob);
  write_public_pem(dir, *pub);
  write_metadata(dir, m);  // last: its presence means the directory is complete
  // Reopen through load() so the new identity knows its directory (static ECDH keys).
  return identity_key::open(dir, std::move(t));
}

std::unique_ptr<identity_key> identity_key::create_software(const fs::path& dir, const std::string& role, const suite& s) {
  prepare_directory(dir);
  spdlog::warn("creating a SOFTWARE identity key for role {} in {}: protection=software, the private key is a file, "
               "not hardware; production roles refuse it",
               role, dir.string());
  auto key = crypto::software_private_key::generate(s.key);
  identity_metadata m;
  m.role = role;
  m.key_suite = s;
  m.key_protection = protection::software;
  m.fingerprint = key.public_part().fingerprint_hex();
  key.save(dir / kSoftwareKeyFile);
  write_public_pem(dir, key.public_part());
  write_metadata(dir, m);
  return std::make_unique<software_identity>(std::move(m), std::move(key));
}

std::unique_ptr<identity_key> identity_key::open(const fs::path& dir, std::shared_ptr<tpm::tpm> t) {
  identity_metadata m = read_metadata(dir);
  std::unique_ptr<identity_key> key;
  if (m.key_protection == protection::tpm) {
    if (!t) throw identity_error(dir.string() + " holds a TPM identity; a TPM (TCTI) is required to use it");
    key = tpm_identity::load(dir, std::move(m), std::move(t));
  } else {
    spdlog::warn("using a SOFTWARE identity key from {} (protection=software)", dir.string());
    try {
      auto sk = crypto::software_private_key::load(dir / kSoftwareKeyFile);
      key = std::make_unique<software_identity>(std::move(m), std::move(sk));
    } catch (const crypto::crypto_error& e) {
      throw identity_error(e.what());
    }
  }
  // The public key on disk and the fingerprint recorded at creation must match the
  // key we can actually sign with: a swapped public.pem would mislead verifiers.
  if (key->public_key().fingerprint_hex() != key->metadata().fingerprint)
    throw identity_error(dir.string() + ": key does not match the fingerprint in identity.toml");
  return key;
}

result<bytes> identity_key::sign_message(byte_view message) {
  return sign_digest(crypto::digest(meta_.key_suite.envelope_hash, message));
}

status identity_key::verify_message(byte_view message, byte_view signature) const {
  return crypto::verify_digest(public_, meta_.key_suite.key, meta_.key_suite.envelope_hash,
                               crypto::digest(meta_.key_suite.envelope_hash, message), signature);
}

std::shared_ptr<tpm::tpm> connect_tpm(const std::string& tcti, bool allow_software_fallback) {
  if (tcti.empty()) {
    if (!allow_software_fallback) throw tpm::tpm_error("no TCTI given and the software fallback is not allowed");
    spdlog::warn("no TPM selected (no TCTI): falling back to SOFTWARE keys, protection=software");
    return nullptr;
  }
  try {
    return std::make_shared<tpm::tpm>(tcti);
  } catch (const tpm::tpm_error& e) {
    if (!allow_software_fallback) throw;
    spdlog::warn("no TPM answers at {} ({}): falling back to SOFTWARE keys, protection=software", tcti, e.what());
    return nullptr;
  }
}

}  // namespace agentbus
