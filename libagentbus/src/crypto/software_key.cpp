#include "crypto/software_key.hpp"

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "crypto/ossl.hpp"

namespace agentbus::crypto {

software_private_key software_private_key::adopt(std::shared_ptr<const pkey_handle> shared) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(shared->pkey.get(), &der);
  if (len <= 0) throw_crypto_error("i2d_PUBKEY");
  auto pub = public_key::from_der(byte_view(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  if (!pub) throw crypto_error("software key has an unsupported type: " + pub.error().to_string());
  return software_private_key(std::move(shared), std::move(pub).value());
}

software_private_key software_private_key::generate(const key_type& type) {
  EVP_PKEY* pkey = type.scheme == signature_scheme::rsa_pss
                       ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(type.rsa_bits))
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group_name_of(type.curve));
  if (pkey == nullptr) throw_crypto_error("software key generation (" + type.describe() + ")");
  return adopt(share_pkey(ossl_ptr<EVP_PKEY>(pkey)));
}

software_private_key software_private_key::load(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) throw crypto_error("cannot read " + file.string() + ": " + std::strerror(errno));
  if ((st.st_mode & 077) != 0)
    throw crypto_error(file.string() + " is readable by group or others; a private key must be mode 0600");
  ossl_ptr<BIO> bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) throw_crypto_error("cannot open " + file.string());
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (pkey == nullptr) throw_crypto_error(file.string() + " holds no PEM private key");
  return adopt(share_pkey(ossl_ptr<EVP_PKEY>(pkey)));
}

void software_private_key::save(const std::filesystem::path& file) const {
  // O_EXCL + 0600 at creation: the key is never briefly world-readable.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw crypto_error("cannot create " + file.string() + ": " + std::strerror(errno));
  ossl_ptr<BIO> bio(BIO_new_fd(fd, BIO_CLOSE));
  if (!bio) {
    ::close(fd);
    throw_crypto_error("BIO_new_fd");
  }
  if (PEM_write_bio_PrivateKey(bio.get(), pkey_->pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    throw_crypto_error("PEM_write_bio_PrivateKey");
}

result<bytes> software_private_key::sign_digest(hash_algorithm h, byte_view digest) const {
  if (digest.size() != hash_size(h)) return status{status_code::invalid_field, "digest length does not match the hash"};
  ossl_ptr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_->pkey.get(), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) throw_crypto_error("EVP_PKEY_sign_init");
  if (public_.type().scheme == signature_scheme::rsa_pss) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md_of(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md_of(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) != 1)
      throw_crypto_error("RSA-PSS sign parameters");
  }
  size_t len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) throw_crypto_error("EVP_PKEY_sign");
  bytes sig(len);
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) throw_crypto_error("EVP_PKEY_sign");
  sig.resize(len);
  return sig;
}

}  // namespace agentbus::crypto
