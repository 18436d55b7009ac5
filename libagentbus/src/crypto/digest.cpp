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

const EVP_MD* md_of(hash_algorithm h) {
  const EVP_MD* md = nullptr;
  switch (h) {
    case hash_algorithm::sha256: md = EVP_sha256(); break;
    case hash_algorithm::sha384: md = EVP_sha384(); break;
    case hash_algorithm::sha512: md = EVP_sha512(); break;
    case hash_algorithm::sha3_256: md = EVP_sha3_256(); break;
    case hash_algorithm::sha3_384: md = EVP_sha3_384(); break;
    case hash_algorithm::sha3_512: md = EVP_sha3_512(); break;
  }
  if (md == nullptr) throw_crypto_error(std::string("digest unavailable: ") + std::string(hash_name(h)));
  return md;
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
