// checks_test.cpp — check_key_and_assurance, the step the broker (at publish) and
// the library (at receive) both run with the sender's role: pinned key, assurance
// level against the role and the key's protection, and the role's batch_max_leaves.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agentbus/envelope.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "session/checks.hpp"
#include "session/handshake.hpp"

namespace agentbus::session {
namespace {

// kPolicy: MONITOR takes batches of up to 8 leaves; DIRECTOR keeps the default
// (1024); DEBUGGER also accepts software keys.
constexpr std::string_view kPolicy = R"(version = 1

[suites.s1]
signature = "ecdsa"
curve = "P-256"
envelope_hash = "sha256"
mac = "hmac-sha256"
ecdh_curve = "P-256"

[defaults]
suite = "s1"

[roles.MONITOR]
batch_max_leaves = 8

[roles.DIRECTOR]

[roles.DEBUGGER]
allow_software = true
assurance = ["tpm", "tpm-batch", "software"]
)";

const policy& pol() {
  static const policy p = policy::parse(kPolicy, "checks_test.toml");
  return p;
}

const bytes kKeyId(kKeyIdSize, 0x5a);

// batch_auth is a tpm-batch auth part from the pinned key whose proof names a
// batch of `leaf_count` leaves (the path is not looked at by this check).
envelope_auth batch_auth(std::uint32_t leaf_count, std::uint32_t leaf_index = 0) {
  envelope_auth a;
  a.level = assurance::tpm_batch;
  a.key_id = kKeyId;
  a.signature = bytes(64, 0x01);
  a.batch = batch_proof{leaf_index, leaf_count, {}};
  return a;
}

status check(const std::string& role, const envelope_auth& a, protection p = protection::tpm) {
  return check_key_and_assurance(pol(), role, p, kKeyId, a);
}

TEST(CheckKeyAndAssurance, BatchAtTheRoleLimitIsAccepted) {
  for (std::uint32_t n : {1u, 2u, 7u, 8u}) {
    SCOPED_TRACE(n);
    status st = check("MONITOR", batch_auth(n, n - 1));
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  EXPECT_TRUE(check("DIRECTOR", batch_auth(1024, 1023)).ok());
}

TEST(CheckKeyAndAssurance, BatchOverTheRoleLimitIsRefusedWithBatchTooLarge) {
  for (std::uint32_t n : {9u, 16u, 1024u, 65536u, 0xffffffffu}) {
    SCOPED_TRACE(n);
    status st = check("MONITOR", batch_auth(n));
    EXPECT_EQ(st.code(), status_code::batch_too_large) << st.to_string();
    EXPECT_NE(st.detail().find("MONITOR"), std::string::npos) << st.detail();
  }
  // The leaf count decides, not the leaf's position in the batch.
  EXPECT_EQ(check("MONITOR", batch_auth(9, 0)).code(), status_code::batch_too_large);
  EXPECT_EQ(check("MONITOR", batch_auth(9, 8)).code(), status_code::batch_too_large);
  // Each role's own limit applies: 9 leaves are fine for a DIRECTOR, 1025 are not.
  EXPECT_TRUE(check("DIRECTOR", batch_auth(9)).ok());
  EXPECT_EQ(check("DIRECTOR", batch_auth(1025)).code(), status_code::batch_too_large);
}

TEST(CheckKeyAndAssurance, DirectSignaturesHaveNoBatchLimit) {
  envelope_auth a;
  a.level = assurance::tpm;
  a.key_id = kKeyId;
  a.signature = bytes(64, 0x01);
  EXPECT_TRUE(check("MONITOR", a).ok());
  a.level = assurance::software;
  EXPECT_TRUE(check("DEBUGGER", a, protection::software).ok());
}

TEST(CheckKeyAndAssurance, KeyAndAssuranceAreCheckedBeforeTheBatchSize) {
  envelope_auth other_key = batch_auth(9);
  other_key.key_id = bytes(kKeyIdSize, 0x77);
  EXPECT_EQ(check("MONITOR", other_key).code(), status_code::wrong_key);
  // A software key cannot claim tpm-batch, whatever the batch size.
  EXPECT_EQ(check("DEBUGGER", batch_auth(2), protection::software).code(), status_code::assurance_refused);
  EXPECT_EQ(check("JANITOR", batch_auth(2)).code(), status_code::unknown_role);
}

}  // namespace
}  // namespace agentbus::session

namespace agentbus {
namespace {

std::vector<bytes> pairs(std::size_t n, std::size_t each = 10) { return std::vector<bytes>(2 * n, bytes(each, 0x01)); }

TEST(CheckWireBatchShape, OneToTheLimitOfPairsWithinTheSizesIsAccepted) {
  EXPECT_TRUE(session::check_wire_batch_shape(pairs(1), 1024).ok());
  EXPECT_TRUE(session::check_wire_batch_shape(pairs(session::kMaxWireBatchEnvelopes), 1024).ok());
  // Exactly the byte limit in total.
  auto frames = pairs(4, session::kMaxWireBatchBytes / 8);
  EXPECT_TRUE(session::check_wire_batch_shape(frames, session::kMaxWireBatchBytes).ok());
}

TEST(CheckWireBatchShape, WrongCountsAreMalformedAndSizesTooLarge) {
  EXPECT_EQ(session::check_wire_batch_shape({}, 1024).code(), status_code::malformed);
  auto odd = pairs(3);
  odd.pop_back();
  EXPECT_EQ(session::check_wire_batch_shape(odd, 1024).code(), status_code::malformed);
  EXPECT_EQ(session::check_wire_batch_shape(pairs(session::kMaxWireBatchEnvelopes + 1), 1024).code(), status_code::malformed);
  EXPECT_EQ(session::check_wire_batch_shape(pairs(2, 600), 1199).code(), status_code::too_large);  // one pair over
  auto big = pairs(4, session::kMaxWireBatchBytes / 8);
  big.back().push_back(0x01);  // one byte over in total
  EXPECT_EQ(session::check_wire_batch_shape(big, session::kMaxWireBatchBytes).code(), status_code::too_large);
}

}  // namespace
}  // namespace agentbus
