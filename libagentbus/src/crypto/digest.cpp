#include <array>
#include <memory>
#include <utility>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

std::string openssl_errors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

void throw_crypto_error(const std::string& what) {
  throw crypto_error(what + ": " + openssl_errors());
}

// md_of returns an explicitly fetched EVP_MD, fetched once per process. EVP_sha256()
// and friends make OpenSSL 3 look the implementation up again on every
// EVP_DigestInit (a lock and a name lookup: 0.40 µs against 0.23 µs for a 200-byte
// SHA-256 here), and every envelope is hashed at each of its three stops.
const EVP_MD* md_of(hash_algorithm h) {
  struct md_deleter {
    void operator()(EVP_MD* md) const noexcept { EVP_MD_free(md); }
  };
  static const auto table = [] {
    constexpr std::array<std::pair<hash_algorithm, const char*>, 6> names = {{{hash_algorithm::sha256, "SHA2-256"},
                                                                              {hash_algorithm::sha384, "SHA2-384"},
                                                                              {hash_algorithm::sha512, "SHA2-512"},
                                                                              {hash_algorithm::sha3_256, "SHA3-256"},
                                                                              {hash_algorithm::sha3_384, "SHA3-384"},
                                                                              {hash_algorithm::sha3_512, "SHA3-512"}}};
    std::array<std::unique_ptr<EVP_MD, md_deleter>, names.size()> mds;
    for (const auto& [h, name] : names) mds.at(static_cast<std::size_t>(h)).reset(EVP_MD_fetch(nullptr, name, nullptr));
    return mds;
  }();
  const auto index = static_cast<std::size_t>(h);
  if (index >= table.size() || !table[index])
    throw_crypto_error(std::string("digest unavailable: ") + std::string(hash_name(h)));
  return table[index].get();
}

bytes digest(hash_algorithm h, byte_view data) {
  bytes out(hash_size(h));
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md_of(h), nullptr) != 1)
    throw_crypto_error("EVP_Digest");
  out.resize(len);
  return out;
}

}  // namespace agentbus::crypto
