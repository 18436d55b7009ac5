#include "identity/identities.hpp"

namespace agentbus {

result<bytes> software_identity::sign_digest(byte_view digest) {
  return key_.sign_digest(key_suite().envelope_hash, digest);
}

}  // namespace agentbus
