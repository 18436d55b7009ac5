#include "net/transport_key.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "agentbus/crypto.hpp"

namespace agentbus::net {

namespace {
struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};

curve_public_key x25519_public(byte_view secret) {
  if (secret.size() != kCurveKeySize) throw std::invalid_argument("a curve secret is 32 bytes");
  std::unique_ptr<EVP_PKEY, pkey_free> k(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, secret.data(), secret.size()));
  if (!k) throw std::runtime_error("EVP_PKEY_new_raw_private_key(X25519) failed");
  curve_public_key pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(k.get(), pub.data(), &len) != 1 || len != pub.size())
    throw std::runtime_error("EVP_PKEY_get_raw_public_key(X25519) failed");
  return pub;
}
}  // namespace

curve_keypair curve_from_secret(byte_view secret) {
  curve_keypair k;
  k.public_key = x25519_public(secret);
  k.secret = secret_bytes(secret);
  return k;
}

curve_keypair curve_generate() {
  bytes raw = crypto::random_bytes(kCurveKeySize);
  curve_keypair k = curve_from_secret(raw);
  std::fill(raw.begin(), raw.end(), std::uint8_t{0});
  return k;
}

curve_keypair curve_from_token(byte_view token) {
  const std::string_view info = kTransportKeyInfo;
  secret_bytes s = crypto::hkdf(hash_algorithm::sha256, token, {},
                                byte_view(reinterpret_cast<const std::uint8_t*>(info.data()), info.size()),
                                kCurveKeySize);
  return curve_from_secret(s.view());
}

bool parse_curve_public(std::string_view hex, curve_public_key& out) {
  if (hex.size() != 2 * kCurveKeySize) return false;
  bool ok = false;
  bytes b = from_hex(hex, &ok);
  if (!ok || b.size() != kCurveKeySize) return false;
  std::copy(b.begin(), b.end(), out.begin());
  return true;
}

curve_keypair curve_load_or_create(const std::filesystem::path& file) {
  const std::string where = "transport key " + file.string();
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno != ENOENT) throw std::runtime_error(where + ": " + std::strerror(errno));
    curve_keypair k = curve_generate();
    // O_EXCL + 0600 at creation: the secret is never briefly readable by others.
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error(where + ": cannot create: " + std::strerror(errno));
    std::string text = to_hex(k.secret.view()) + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    std::fill(text.begin(), text.end(), '\0');
    if (::close(fd) != 0 || !written) throw std::runtime_error(where + ": cannot write: " + std::strerror(errno));
    return k;
  }
  if ((st.st_mode & 077) != 0)
    throw std::runtime_error(where + " is readable by group or others; it must be mode 0600");
  std::ifstream in(file);
  std::string text;
  if (!in || !std::getline(in, text)) throw std::runtime_error(where + ": cannot read");
  bool ok = false;
  bytes raw = from_hex(text, &ok);
  std::fill(text.begin(), text.end(), '\0');
  if (!ok || raw.size() != kCurveKeySize) {
    std::fill(raw.begin(), raw.end(), std::uint8_t{0});
    throw std::runtime_error(where + ": expected one line of 64 hex digits");
  }
  curve_keypair k = curve_from_secret(raw);
  std::fill(raw.begin(), raw.end(), std::uint8_t{0});
  return k;
}

void make_curve_server(zmq::socket_t& socket, const curve_keypair& own, std::string_view zap_domain) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(own.secret.data(), own.secret.size()));
  socket.set(zmq::sockopt::zap_domain, std::string(zap_domain));
}

void make_curve_client(zmq::socket_t& socket, const curve_keypair& own, const curve_public_key& server) {
  socket.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(server.data(), server.size()));
  socket.set(zmq::sockopt::curve_publickey, zmq::const_buffer(own.public_key.data(), own.public_key.size()));
  socket.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(own.secret.data(), own.secret.size()));
}

}  // namespace agentbus::net
