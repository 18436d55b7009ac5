// policy_test.cpp — the shipped algorithm policy (config/policy.toml and the
// built-in copy), the DESIGN.md role table, suite, assurance and batch-size checks, and one
// test per validation rule of the loader (each naming the file and the field).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agentbus/fingerprint.hpp"
#include "agentbus/policy.hpp"
#include "agentbus/status.hpp"
#include "agentbus/suite.hpp"

namespace agentbus {
namespace {

namespace fs = std::filesystem;

const std::string kShippedFile = AGENTBUS_SOURCE_DIR "/config/policy.toml";

// kMinimal is the smallest valid policy; each error test changes one thing in it.
constexpr std::string_view kMinimal = R"(version = 1

[suites.s1]
signature = "ecdsa"
curve = "P-256"
envelope_hash = "sha256"
mac = "hmac-sha256"
ecdh_curve = "P-256"

[roles.MONITOR]
suite = "s1"
)";

// kRsa is the smallest valid policy with an RSA-PSS suite.
constexpr std::string_view kRsa = R"(version = 1

[suites.r]
signature = "rsa-pss"
rsa_bits = 3072
envelope_hash = "sha384"
mac = "hmac-sha384"
ecdh_curve = "P-384"

[roles.DIRECTOR]
suite = "r"
)";

// edit replaces the one occurrence of `from` in `text` (a test typo fails loudly).
std::string edit(std::string_view text, std::string_view from, std::string_view to) {
  std::string out(text);
  auto pos = out.find(from);
  if (pos == std::string::npos || out.find(from, pos + 1) != std::string::npos) {
    ADD_FAILURE() << "test document does not contain exactly one '" << from << "'";
    return out;
  }
  out.replace(pos, from.size(), to);
  return out;
}

// expect_policy_error parses `text` as "test.toml" and checks that the loader
// refuses it with an error that names the file and exactly `field`, and whose
// message reads "test.toml: <field>: <problem>" with `problem` in it.
void expect_policy_error(std::string_view text, const std::string& field, std::string_view problem) {
  SCOPED_TRACE("expected field " + field);
  try {
    (void)policy::parse(text, "test.toml");
    ADD_FAILURE() << "policy was accepted:\n" << text;
  } catch (const policy_error& e) {
    EXPECT_EQ(e.file(), "test.toml");
    EXPECT_EQ(e.field(), field);
    std::string what = e.what();
    EXPECT_EQ(what.rfind("test.toml: " + field + ": ", 0), 0u) << what;
    EXPECT_NE(what.find(problem), std::string::npos) << what;
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

key_type rsa_key(unsigned bits) {
  key_type t;
  t.scheme = signature_scheme::rsa_pss;
  t.rsa_bits = bits;
  return t;
}

key_type ec_key(ec_curve c) {
  key_type t;
  t.scheme = signature_scheme::ecdsa;
  t.curve = c;
  return t;
}

const policy& shipped() {
  static const policy p = policy::load_file(kShippedFile);
  return p;
}

const std::vector<std::string> kDesignRoles = {"DIRECTOR",  "SECURITY",  "ARCHITECT", "CONSTRUCTOR",
                                               "MONITOR",   "OPTIMIZER", "DEBUGGER"};

// ---------------------------------------------------------------------------
// The shipped policy.
// ---------------------------------------------------------------------------

TEST(ShippedPolicy, FileEqualsBuiltinDefaultFieldByField) {
  const policy& file = shipped();
  policy builtin = policy::builtin_default();
  EXPECT_EQ(file.source(), kShippedFile);

  ASSERT_EQ(file.suites().size(), builtin.suites().size());
  for (const suite& s : file.suites()) {
    SCOPED_TRACE("suite " + s.name);
    const suite* b = builtin.find_suite(s.name);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->name, s.name);
    EXPECT_EQ(b->key, s.key);
    EXPECT_EQ(b->key.scheme, s.key.scheme);
    EXPECT_EQ(b->key.rsa_bits, s.key.rsa_bits);
    EXPECT_EQ(b->key.curve, s.key.curve);
    EXPECT_EQ(b->envelope_hash, s.envelope_hash);
    EXPECT_EQ(b->mac_hash, s.mac_hash);
    EXPECT_EQ(b->ecdh_curve, s.ecdh_curve);
  }

  ASSERT_EQ(file.roles().size(), builtin.roles().size());
  for (const role_policy& r : file.roles()) {
    SCOPED_TRACE("role " + r.name);
    const role_policy* b = builtin.find_role(r.name);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->name, r.name);
    EXPECT_EQ(b->suite, r.suite);
    EXPECT_EQ(b->accepted_assurance, r.accepted_assurance);
    EXPECT_EQ(b->allow_software, r.allow_software);
    EXPECT_EQ(b->allow_simulator, r.allow_simulator);
    EXPECT_EQ(b->batch.max_leaves, r.batch.max_leaves);
    EXPECT_EQ(b->batch.max_delay, r.batch.max_delay);
    EXPECT_EQ(b->send_to, r.send_to);
    EXPECT_EQ(b->publish, r.publish);
    EXPECT_EQ(b->subscribe, r.subscribe);
  }
}

TEST(ShippedPolicy, DefinesExactlyTheDesignRoles) {
  std::vector<std::string> names;
  for (const role_policy& r : shipped().roles()) names.push_back(r.name);
  std::vector<std::string> expected = kDesignRoles;
  std::sort(names.begin(), names.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
}

// One row of the DESIGN.md table "Algorithm policy (the DIRECTOR/MONITOR table)".
struct design_row {
  std::string role;
  std::string suite;
  key_type key;
  hash_algorithm envelope_hash;
  hash_algorithm mac_hash;
  ec_curve ecdh_curve;
};

std::vector<design_row> design_table() {
  const design_row rsa = {"", "rsa3072-pss-sha384", rsa_key(3072), hash_algorithm::sha384, hash_algorithm::sha384,
                          ec_curve::p384};
  const design_row p384 = {"", "ecdsa-p384-sha3-384", ec_key(ec_curve::p384), hash_algorithm::sha3_384,
                           hash_algorithm::sha384, ec_curve::p384};
  const design_row p256 = {"", "ecdsa-p256-sha256", ec_key(ec_curve::p256), hash_algorithm::sha256,
                           hash_algorithm::sha256, ec_curve::p256};
  std::vector<design_row> rows;
  auto add = [&rows](const char* role, design_row row) {
    row.role = role;
    rows.push_back(std::move(row));
  };
  add("DIRECTOR", rsa);
  add("SECURITY", rsa);
  add("ARCHITECT", p384);
  add("CONSTRUCTOR", p384);
  add("MONITOR", p256);
  add("OPTIMIZER", p256);
  add("DEBUGGER", p256);
  return rows;
}

class DesignTable : public ::testing::TestWithParam<design_row> {};

TEST_P(DesignTable, RoleUsesItsSuite) {
  const design_row& row = GetParam();
  const policy builtin = policy::builtin_default();
  for (const policy* p : {&shipped(), &builtin}) {
    const policy& pol = *p;
    SCOPED_TRACE(pol.source());
    auto s = pol.suite_for(row.role);
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    EXPECT_EQ(s->name, row.suite);
    EXPECT_EQ(s->key, row.key) << s->key.describe();
    EXPECT_EQ(s->envelope_hash, row.envelope_hash) << hash_name(s->envelope_hash);
    EXPECT_EQ(s->mac_hash, row.mac_hash) << hash_name(s->mac_hash);
    EXPECT_EQ(s->ecdh_curve, row.ecdh_curve) << curve_name(s->ecdh_curve);
    ASSERT_NE(pol.find_role(row.role), nullptr);
    EXPECT_EQ(pol.find_role(row.role)->suite, row.suite);
  }
}

INSTANTIATE_TEST_SUITE_P(Roles, DesignTable, ::testing::ValuesIn(design_table()),
                         [](const auto& info) { return info.param.role; });

TEST(ShippedPolicy, DefaultSuiteIsEcdsaP256Sha3_256ForRolesWithoutOne) {
  const suite* d = shipped().find_suite("ecdsa-p256-sha3-256");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->key, ec_key(ec_curve::p256));
  EXPECT_EQ(d->envelope_hash, hash_algorithm::sha3_256);
  EXPECT_EQ(d->mac_hash, hash_algorithm::sha256);
  EXPECT_EQ(d->ecdh_curve, ec_curve::p256);

  // A role the operator adds without a suite gets the "(default)" row.
  policy p = policy::parse(read_text(kShippedFile) + "\n[roles.AUDITOR]\n", "shipped+AUDITOR");
  auto s = p.suite_for("AUDITOR");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_EQ(s->name, "ecdsa-p256-sha3-256");
  EXPECT_EQ(p.find_role("AUDITOR")->accepted_assurance, (std::vector<assurance>{assurance::tpm, assurance::tpm_batch}));
  EXPECT_FALSE(p.find_role("AUDITOR")->allow_software);
}

TEST(ShippedPolicy, OnlyDebuggerAcceptsSoftwareKeysAndAllAcceptSimulators) {
  for (const std::string& role : kDesignRoles) {
    SCOPED_TRACE(role);
    const role_policy* r = shipped().find_role(role);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->allow_software, role == "DEBUGGER");
    EXPECT_TRUE(r->allow_simulator);
  }
}

// The batch window each shipped role gets from its profile (or [defaults]).
batch_limits shipped_window(const std::string& role) {
  if (role == "DIRECTOR" || role == "SECURITY") return {1, std::chrono::milliseconds(2)};  // high_security: no batches
  if (role == "OPTIMIZER") return {256, std::chrono::milliseconds(0)};                      // realtime: never waits
  return {1024, std::chrono::milliseconds(2)};                                             // batch, and [defaults]
}

TEST(ShippedPolicy, EveryRoleHasItsProfilesBatchWindow) {
  for (const std::string& role : kDesignRoles) {
    SCOPED_TRACE(role);
    auto b = shipped().batch_limits_for(role);
    ASSERT_TRUE(b.ok()) << b.error().to_string();
    EXPECT_EQ(*b, shipped_window(role));
  }
  // A role the operator adds inherits [defaults].
  policy p = policy::parse(read_text(kShippedFile) + "\n[roles.AUDITOR]\n", "shipped+AUDITOR");
  EXPECT_EQ(p.find_role("AUDITOR")->batch, (batch_limits{1024, std::chrono::milliseconds(2)}));
}

TEST(ShippedPolicy, SuiteForUnknownRoleIsUnknownRole) {
  for (std::string_view role : {"JANITOR", "director", "Director", "", "DIRECTOR "}) {
    SCOPED_TRACE(role);
    auto s = shipped().suite_for(role);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), status_code::unknown_role);
    EXPECT_EQ(shipped().find_role(role), nullptr);
  }
  EXPECT_EQ(shipped().find_suite("rsa9999"), nullptr);
}

// ---------------------------------------------------------------------------
// check_declared_suite: the exact suite of the sender's role, nothing else.
// ---------------------------------------------------------------------------

TEST(CheckDeclaredSuite, ExactMatchIsAccepted) {
  for (const design_row& row : design_table()) {
    SCOPED_TRACE(row.role);
    status st = shipped().check_declared_suite(row.role, row.suite);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
}

TEST(CheckDeclaredSuite, StrongerSuiteIsStillAMismatch) {
  // MONITOR (P-256/SHA-256) declaring either P-384 or RSA-3072 suite: no "stronger is fine".
  EXPECT_EQ(shipped().check_declared_suite("MONITOR", "ecdsa-p384-sha3-384").code(), status_code::suite_mismatch);
  EXPECT_EQ(shipped().check_declared_suite("MONITOR", "rsa3072-pss-sha384").code(), status_code::suite_mismatch);
  EXPECT_EQ(shipped().check_declared_suite("ARCHITECT", "rsa3072-pss-sha384").code(), status_code::suite_mismatch);
  // Same key and curve, different hash: another suite.
  EXPECT_EQ(shipped().check_declared_suite("MONITOR", "ecdsa-p256-sha3-256").code(), status_code::suite_mismatch);
}

TEST(CheckDeclaredSuite, WeakerSuiteIsAMismatch) {
  EXPECT_EQ(shipped().check_declared_suite("DIRECTOR", "ecdsa-p256-sha256").code(), status_code::suite_mismatch);
  EXPECT_EQ(shipped().check_declared_suite("SECURITY", "ecdsa-p384-sha3-384").code(), status_code::suite_mismatch);
  EXPECT_EQ(shipped().check_declared_suite("CONSTRUCTOR", "ecdsa-p256-sha256").code(), status_code::suite_mismatch);
}

TEST(CheckDeclaredSuite, NamesAreComparedExactly) {
  for (std::string_view declared : {"RSA3072-PSS-SHA384", "rsa3072-pss-sha384 ", "", "rsa3072-pss", "nope"}) {
    SCOPED_TRACE(declared);
    EXPECT_EQ(shipped().check_declared_suite("DIRECTOR", declared).code(), status_code::suite_mismatch);
  }
}

TEST(CheckDeclaredSuite, UnknownRoleIsUnknownRole) {
  EXPECT_EQ(shipped().check_declared_suite("JANITOR", "ecdsa-p256-sha256").code(), status_code::unknown_role);
  EXPECT_EQ(shipped().check_declared_suite("monitor", "ecdsa-p256-sha256").code(), status_code::unknown_role);
}

// ---------------------------------------------------------------------------
// check_assurance.
// ---------------------------------------------------------------------------

TEST(CheckAssurance, ProductionRolesAcceptTpmAndTpmBatchOnlyAndHighSecurityNoBatches) {
  for (const std::string& role : kDesignRoles) {
    if (role == "DEBUGGER") continue;
    SCOPED_TRACE(role);
    const bool high_security = role == "DIRECTOR" || role == "SECURITY";
    EXPECT_TRUE(shipped().check_assurance(role, assurance::tpm).ok());
    EXPECT_EQ(shipped().check_assurance(role, assurance::tpm_batch).ok(), !high_security);
    EXPECT_EQ(shipped().check_assurance(role, assurance::software).code(), status_code::assurance_refused);
  }
}

TEST(CheckAssurance, DebuggerAlsoAcceptsSoftware) {
  EXPECT_TRUE(shipped().check_assurance("DEBUGGER", assurance::tpm).ok());
  EXPECT_TRUE(shipped().check_assurance("DEBUGGER", assurance::tpm_batch).ok());
  EXPECT_TRUE(shipped().check_assurance("DEBUGGER", assurance::software).ok());
}

TEST(CheckAssurance, UnknownRoleIsUnknownRole) {
  EXPECT_EQ(shipped().check_assurance("JANITOR", assurance::tpm).code(), status_code::unknown_role);
}

TEST(CheckAssurance, FollowsTheRoleList) {
  policy p = policy::parse(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [\"tpm\"]\n"), "test.toml");
  EXPECT_TRUE(p.check_assurance("MONITOR", assurance::tpm).ok());
  EXPECT_EQ(p.check_assurance("MONITOR", assurance::tpm_batch).code(), status_code::assurance_refused);
  EXPECT_EQ(p.check_assurance("MONITOR", assurance::software).code(), status_code::assurance_refused);
}

// ---------------------------------------------------------------------------
// batch_limits_for and check_batch_size.
// ---------------------------------------------------------------------------

TEST(CheckBatchSize, AcceptsUpToTheRoleLimitAndRefusesAbove) {
  policy p = policy::parse(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nbatch_max_leaves = 16\n"), "test.toml");
  for (std::uint32_t n : {1u, 2u, 15u, 16u}) EXPECT_TRUE(p.check_batch_size("MONITOR", n).ok()) << n;
  for (std::uint32_t n : {17u, 1024u, 65537u, 0xffffffffu}) {
    status st = p.check_batch_size("MONITOR", n);
    EXPECT_EQ(st.code(), status_code::batch_too_large) << n;
    EXPECT_NE(st.detail().find("at most 16"), std::string::npos) << st.detail();
  }
}

TEST(CheckBatchSize, ShippedRolesAcceptTheirProfilesLimit) {
  for (const std::string& role : kDesignRoles) {
    SCOPED_TRACE(role);
    const std::uint32_t limit = shipped_window(role).max_leaves;
    EXPECT_TRUE(shipped().check_batch_size(role, limit).ok());
    EXPECT_EQ(shipped().check_batch_size(role, limit + 1).code(), status_code::batch_too_large);
  }
}

// ---------------------------------------------------------------------------
// Operation profiles

TEST(Profiles, ShippedProfilesAreThePlansThreeAndRolesPointToThem) {
  const policy& p = shipped();
  ASSERT_EQ(p.profiles().size(), 3u);
  const operation_profile* hs = p.find_profile("high_security");
  ASSERT_NE(hs, nullptr);
  EXPECT_EQ(hs->suite, std::optional<std::string>("rsa3072-pss-sha384"));
  EXPECT_EQ(hs->rekey_after_messages, 100000u);
  EXPECT_EQ(hs->rekey_after, std::chrono::seconds(600));
  EXPECT_FALSE(hs->description.empty());
  EXPECT_NE(p.find_profile("realtime"), nullptr);
  EXPECT_NE(p.find_profile("batch"), nullptr);
  EXPECT_EQ(p.find_role("DIRECTOR")->profile, "high_security");
  EXPECT_EQ(p.find_role("DIRECTOR")->rekey_after_messages, 100000u);
  EXPECT_EQ(p.find_role("MONITOR")->profile, "batch");
  EXPECT_EQ(p.find_role("OPTIMIZER")->profile, "realtime");
  EXPECT_EQ(p.find_role("ARCHITECT")->profile, "");
  EXPECT_EQ(p.find_role("ARCHITECT")->rekey_after_messages, 0u) << "no profile: the endpoints' own limits";
  // DESIGN.md's suites hold whatever the profiles say.
  EXPECT_EQ(p.find_role("DIRECTOR")->suite, "rsa3072-pss-sha384");
  EXPECT_EQ(p.find_role("OPTIMIZER")->suite, "ecdsa-p256-sha256");
}

TEST(Profiles, TheRolesOwnKeysOverrideItsProfile) {
  std::string text = read_text(kShippedFile);
  const std::string monitor = "[roles.MONITOR]\n";
  text.replace(text.find(monitor), monitor.size(), monitor + "batch_max_leaves = 64\nrekey_after_seconds = 120\n");
  const policy p = policy::parse(text, "t");
  const role_policy& r = *p.find_role("MONITOR");
  EXPECT_EQ(r.profile, "batch");
  EXPECT_EQ(r.batch.max_leaves, 64u);
  EXPECT_EQ(r.batch.max_delay, std::chrono::milliseconds(2)) << "from the profile";
  EXPECT_EQ(r.rekey_after, std::chrono::seconds(120));
}

TEST(Profiles, MistakesAreNamedWithTheirField) {
  const std::string base = read_text(kShippedFile);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = base;
    t.replace(t.find(from), from.size(), to);
    return t;
  };
  expect_policy_error(with(R"(profile = "batch")", R"(profile = "bulk")"), "roles.MONITOR.profile", "unknown profile 'bulk'");
  expect_policy_error(with("[profiles.batch]\n", "[profiles.extra]\nsuite = \"nope\"\n\n[profiles.batch]\n"),
                      "profiles.extra.suite", "unknown suite 'nope'");
  expect_policy_error(with("[profiles.batch]\n", "[profiles.batch]\nrekey_after_seconds = 0\n"),
                      "profiles.batch.rekey_after_seconds", "must be from 1");
  expect_policy_error(with("[profiles.batch]\n", "[profiles.batch]\nsend_to = []\n"), "profiles.batch.send_to", "unknown key");
  expect_policy_error(with("[defaults]\n", "[defaults]\nprofile = \"batch\"\n"), "defaults.profile", "unknown key");
}

TEST(CheckBatchSize, UnknownRoleIsUnknownRole) {
  EXPECT_EQ(shipped().check_batch_size("JANITOR", 1).code(), status_code::unknown_role);
  auto b = shipped().batch_limits_for("JANITOR");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), status_code::unknown_role);
}

TEST(CheckBatchSize, CodeIsStable) {
  EXPECT_EQ(static_cast<int>(status_code::batch_too_large), 306);
  EXPECT_EQ(status_code_name(status_code::batch_too_large), "batch_too_large");
}

// ---------------------------------------------------------------------------
// Valid documents and defaults.
// ---------------------------------------------------------------------------

TEST(PolicyParse, MinimalDocumentGetsTheStrictDefaults) {
  policy p = policy::parse(kMinimal, "test.toml");
  EXPECT_EQ(p.source(), "test.toml");
  ASSERT_EQ(p.roles().size(), 1u);
  const role_policy& r = p.roles()[0];
  EXPECT_EQ(r.name, "MONITOR");
  EXPECT_EQ(r.suite, "s1");
  EXPECT_EQ(r.accepted_assurance, (std::vector<assurance>{assurance::tpm, assurance::tpm_batch}));
  EXPECT_FALSE(r.allow_software);
  EXPECT_TRUE(r.allow_simulator);
  EXPECT_EQ(r.batch.max_leaves, 1024u);
  EXPECT_EQ(r.batch.max_delay, std::chrono::milliseconds(2));
}

TEST(PolicyParse, RolesInheritDefaultsAndMayOverrideThem) {
  std::string text = edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n",
                          "[defaults]\nsuite = \"s1\"\nassurance = [\"tpm\"]\nallow_simulator = false\n\n"
                          "[roles.MONITOR]\n\n"
                          "[roles.DEBUGGER]\nassurance = [\"tpm\", \"software\"]\nallow_software = true\n"
                          "allow_simulator = true\n");
  policy p = policy::parse(text, "test.toml");
  const role_policy* m = p.find_role("MONITOR");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->suite, "s1");
  EXPECT_EQ(m->accepted_assurance, std::vector<assurance>{assurance::tpm});
  EXPECT_FALSE(m->allow_simulator);
  const role_policy* d = p.find_role("DEBUGGER");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->accepted_assurance, (std::vector<assurance>{assurance::tpm, assurance::software}));
  EXPECT_TRUE(d->allow_software);
  EXPECT_TRUE(d->allow_simulator);
}

TEST(PolicyParse, BatchLimitsComeFromDefaultsAndRolesOverrideEachKey) {
  std::string text = edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n",
                          "[defaults]\nsuite = \"s1\"\nbatch_max_leaves = 256\nbatch_max_delay_ms = 5\n\n"
                          "[roles.MONITOR]\n\n"
                          "[roles.OPTIMIZER]\nbatch_max_leaves = 64\n\n"
                          "[roles.DIRECTOR]\nbatch_max_delay_ms = 0\n");
  policy p = policy::parse(text, "test.toml");
  EXPECT_EQ(p.batch_limits_for("MONITOR").value(), (batch_limits{256, std::chrono::milliseconds(5)}));
  EXPECT_EQ(p.batch_limits_for("OPTIMIZER").value(), (batch_limits{64, std::chrono::milliseconds(5)}));
  EXPECT_EQ(p.batch_limits_for("DIRECTOR").value(), (batch_limits{256, std::chrono::milliseconds(0)}));
  EXPECT_EQ(p.check_batch_size("OPTIMIZER", 65).code(), status_code::batch_too_large);
  EXPECT_TRUE(p.check_batch_size("MONITOR", 256).ok());
}

TEST(PolicyParse, BatchLimitsAcceptTheirBounds) {
  for (auto [leaves, delay] : {std::pair{1, 0}, std::pair{65536, 1000}, std::pair{1024, 2}}) {
    SCOPED_TRACE(std::to_string(leaves) + " leaves, " + std::to_string(delay) + " ms");
    policy p = policy::parse(edit(kMinimal, "suite = \"s1\"\n",
                                  "suite = \"s1\"\nbatch_max_leaves = " + std::to_string(leaves) +
                                      "\nbatch_max_delay_ms = " + std::to_string(delay) + "\n"),
                             "test.toml");
    const role_policy* r = p.find_role("MONITOR");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->batch.max_leaves, static_cast<std::uint32_t>(leaves));
    EXPECT_EQ(r->batch.max_delay, std::chrono::milliseconds(delay));
  }
}

// ---------------------------------------------------------------------------
// Validation: one test per rule; each names the file and the exact field.
// ---------------------------------------------------------------------------

TEST(PolicyValidation, TomlSyntaxErrorNamesLineAndColumn) {
  expect_policy_error(edit(kMinimal, "[suites.s1]", "[suites.s1"), "line 3 column 11", "expected ']'");
  expect_policy_error(edit(kMinimal, "mac = \"hmac-sha256\"", "mac = = \"hmac-sha256\""), "line 7 column 7",
                      "could not determine value type");
}

TEST(PolicyValidation, MissingVersion) {
  expect_policy_error(edit(kMinimal, "version = 1\n", ""), "version", "missing");
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = \"1\"\n"), "version", "missing");
}

TEST(PolicyValidation, UnsupportedVersion) {
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = 2\n"), "version", "unsupported policy version 2");
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = 0\n"), "version", "unsupported policy version 0");
}

TEST(PolicyValidation, UnknownTopLevelKey) {
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = 1\nallow_everything = true\n"), "allow_everything",
                      "unknown key");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[role.MONITOR]"), "role", "unknown key");
}

TEST(PolicyValidation, UnknownKeyInSuite) {
  expect_policy_error(edit(kMinimal, "envelope_hash", "envelope_hsh"), "suites.s1.envelope_hsh", "unknown key");
}

TEST(PolicyValidation, UnknownKeyInRoleOrDefaults) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nallow_sofware = true\n"),
                      "roles.MONITOR.allow_sofware", "unknown key");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nsuites = \"s1\"\n\n[roles.MONITOR]"),
                      "defaults.suites", "unknown key");
}

TEST(PolicyValidation, MissingSuitesOrRoles) {
  expect_policy_error("version = 1\n[roles.MONITOR]\nsuite = \"s1\"\n", "suites", "missing table");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n", ""), "roles", "missing table");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n", "[roles]\n"), "roles",
                      "at least one role");
}

TEST(PolicyValidation, MissingSuiteKey) {
  expect_policy_error(edit(kMinimal, "mac = \"hmac-sha256\"\n", ""), "suites.s1.mac", "missing");
  expect_policy_error(edit(kMinimal, "signature = \"ecdsa\"\n", ""), "suites.s1.signature", "missing");
}

TEST(PolicyValidation, BadSignatureKind) {
  for (std::string_view kind : {"ed25519", "rsa", "RSA-PSS", "ECDSA", "rsa-pkcs1"}) {
    SCOPED_TRACE(kind);
    expect_policy_error(edit(kMinimal, "\"ecdsa\"", "\"" + std::string(kind) + "\""), "suites.s1.signature",
                        "must be \"rsa-pss\" or \"ecdsa\"");
  }
}

TEST(PolicyValidation, RsaBitsOutOfRange) {
  for (std::string_view bits : {"1024", "2047", "8192", "0", "-3072"}) {
    SCOPED_TRACE(bits);
    expect_policy_error(edit(kRsa, "3072", bits), "suites.r.rsa_bits", "must be 2048, 3072 or 4096");
  }
  expect_policy_error(edit(kRsa, "rsa_bits = 3072\n", "rsa_bits = \"3072\"\n"), "suites.r.rsa_bits",
                      "required integer");
  expect_policy_error(edit(kRsa, "rsa_bits = 3072\n", ""), "suites.r.rsa_bits", "required integer");
  for (std::string_view bits : {"2048", "4096"}) EXPECT_NO_THROW((void)policy::parse(edit(kRsa, "3072", bits), "t"));
}

TEST(PolicyValidation, RsaPssWithSha3IsRefused) {
  // The TPM computes PSS padding (the hash is inside it) and TPMs lack SHA-3.
  for (std::string_view h : {"sha3-256", "sha3-384", "sha3-512"}) {
    SCOPED_TRACE(h);
    expect_policy_error(edit(kRsa, "envelope_hash = \"sha384\"", "envelope_hash = \"" + std::string(h) + "\""),
                        "suites.r.envelope_hash", "rsa-pss needs a SHA-2 hash");
  }
  // ECDSA with SHA-3 is fine: the TPM signs any digest of the right size.
  EXPECT_NO_THROW((void)policy::parse(edit(kMinimal, "\"sha256\"", "\"sha3-256\""), "t"));
}

TEST(PolicyValidation, BadEnvelopeHash) {
  for (std::string_view h : {"md5", "sha1", "SHA256", "sha-256", "sha3_256"}) {
    SCOPED_TRACE(h);
    expect_policy_error(edit(kMinimal, "\"sha256\"", "\"" + std::string(h) + "\""), "suites.s1.envelope_hash",
                        "must be sha256");
  }
}

TEST(PolicyValidation, BadCurve) {
  for (std::string_view c : {"P-224", "secp256k1", "p-256", "P256", "X25519"}) {
    SCOPED_TRACE(c);
    expect_policy_error(edit(kMinimal, "curve = \"P-256\"\nenvelope", "curve = \"" + std::string(c) + "\"\nenvelope"),
                        "suites.s1.curve", "must be P-256, P-384 or P-521");
    expect_policy_error(edit(kMinimal, "ecdh_curve = \"P-256\"", "ecdh_curve = \"" + std::string(c) + "\""),
                        "suites.s1.ecdh_curve", "must be P-256, P-384 or P-521");
  }
}

TEST(PolicyValidation, KeyParametersOfTheOtherScheme) {
  expect_policy_error(edit(kRsa, "rsa_bits = 3072\n", "rsa_bits = 3072\ncurve = \"P-384\"\n"), "suites.r.curve",
                      "not used by rsa-pss");
  expect_policy_error(edit(kMinimal, "curve = \"P-256\"\nenvelope", "curve = \"P-256\"\nrsa_bits = 3072\nenvelope"),
                      "suites.s1.rsa_bits", "not used by ecdsa");
}

TEST(PolicyValidation, BadMac) {
  for (std::string_view m : {"hmac-md5", "hmac-sha1", "sha256", "hmac-sha3-256", "HMAC-SHA256", "kmac256"}) {
    SCOPED_TRACE(m);
    expect_policy_error(edit(kMinimal, "\"hmac-sha256\"", "\"" + std::string(m) + "\""), "suites.s1.mac",
                        "must be hmac-sha256, hmac-sha384 or hmac-sha512");
  }
}

TEST(PolicyValidation, RoleWithUnknownSuite) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"", "suite = \"nope\""), "roles.MONITOR.suite",
                      "unknown suite 'nope'");
  expect_policy_error(edit(kMinimal, "suite = \"s1\"", "suite = \"S1\""), "roles.MONITOR.suite",
                      "unknown suite 'S1'");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nsuite = \"nope\"\n\n[roles.MONITOR]"),
                      "defaults.suite", "unknown suite 'nope'");
}

TEST(PolicyValidation, RoleNameNotUpperCase) {
  for (std::string_view name : {"monitor", "Monitor", "MON-ITOR", "\"MON ITOR\"", "\"\""}) {
    SCOPED_TRACE(name);
    std::string key(name);
    std::string field = "roles." + (key.front() == '"' ? key.substr(1, key.size() - 2) : key);
    expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[roles." + key + "]"), field,
                        "role names are upper-case letters, digits and '_'");
  }
  EXPECT_NO_THROW((void)policy::parse(edit(kMinimal, "[roles.MONITOR]", "[roles.MONITOR_2]"), "t"));
}

TEST(PolicyValidation, RoleWithoutSuiteWhenDefaultsNameNone) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", ""), "roles.MONITOR.suite",
                      "missing, and neither [defaults] nor its profile names a suite");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n",
                           "[defaults]\nallow_simulator = true\n\n[roles.MONITOR]\n"),
                      "roles.MONITOR.suite", "missing, and neither [defaults] nor its profile names a suite");
  // With a default suite the same role is fine.
  policy p = policy::parse(edit(kMinimal, "[roles.MONITOR]\nsuite = \"s1\"\n", "[defaults]\nsuite = \"s1\"\n\n[roles.MONITOR]\n"),
                           "t");
  EXPECT_EQ(p.find_role("MONITOR")->suite, "s1");
}

TEST(PolicyValidation, AssuranceWithUnknownLevel) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [\"tpm\", \"hardware\"]\n"),
                      "roles.MONITOR.assurance", "unknown assurance level 'hardware'");
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [\"tpm_batch\"]\n"),
                      "roles.MONITOR.assurance", "unknown assurance level 'tpm_batch'");
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [1]\n"),
                      "roles.MONITOR.assurance", "entries must be strings");
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = \"tpm\"\n"),
                      "roles.MONITOR.assurance", "must be an array");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nassurance = [\"hsm\"]\n\n[roles.MONITOR]"),
                      "defaults.assurance", "unknown assurance level 'hsm'");
}

TEST(PolicyValidation, AssuranceWithDuplicateLevel) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [\"tpm\", \"tpm-batch\", \"tpm\"]\n"),
                      "roles.MONITOR.assurance", "lists 'tpm' twice");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nassurance = [\"tpm-batch\", \"tpm-batch\"]\n\n[roles.MONITOR]"),
                      "defaults.assurance", "lists 'tpm-batch' twice");
}

TEST(PolicyValidation, AssuranceWithEmptyList) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = []\n"), "roles.MONITOR.assurance",
                      "must accept at least one level");
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nassurance = []\n\n[roles.MONITOR]"),
                      "defaults.assurance", "must accept at least one level");
}

TEST(PolicyValidation, SoftwareAssuranceWithoutAllowSoftware) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nassurance = [\"tpm\", \"software\"]\n"),
                      "roles.MONITOR.assurance", "\"software\" must be listed exactly when allow_software = true");
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n",
                           "suite = \"s1\"\nassurance = [\"software\"]\nallow_software = false\n"),
                      "roles.MONITOR.assurance", "\"software\" must be listed exactly when allow_software = true");
}

TEST(PolicyValidation, AllowSoftwareWithoutSoftwareAssurance) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nallow_software = true\n"),
                      "roles.MONITOR.assurance", "\"software\" must be listed exactly when allow_software = true");
  // Inherited from [defaults], the contradiction is reported on the role that has it.
  expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nallow_software = true\n\n[roles.MONITOR]"),
                      "roles.MONITOR.assurance", "\"software\" must be listed exactly when allow_software = true");
  // Both together are the documented way to accept software keys.
  EXPECT_NO_THROW((void)policy::parse(
      edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nallow_software = true\nassurance = [\"software\"]\n"), "t"));
}

TEST(PolicyValidation, NonBooleanFlags) {
  for (std::string_view v : {"\"yes\"", "1", "\"true\""}) {
    SCOPED_TRACE(v);
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nallow_simulator = " + std::string(v) + "\n"),
                        "roles.MONITOR.allow_simulator", "must be true or false");
    expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nallow_simulator = " + std::string(v) + "\n\n[roles.MONITOR]"),
                        "defaults.allow_simulator", "must be true or false");
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nallow_software = " + std::string(v) + "\n"),
                        "roles.MONITOR.allow_software", "must be true or false");
  }
}

TEST(PolicyValidation, AclListsAreArraysOfStrings) {
  for (std::string_view key : {"send_to", "publish", "subscribe"}) {
    SCOPED_TRACE(key);
    std::string k(key);
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\n" + k + " = \"MONITOR\"\n"),
                        "roles.MONITOR." + k, "must be an array of strings");
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\n" + k + " = [1]\n"),
                        "roles.MONITOR." + k, "entries must be strings");
  }
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = 1\nrevoked = \"monitor-1\"\n"), "revoked",
                      "must be an array of strings");
}

TEST(PolicyValidation, SendToUnknownRole) {
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nsend_to = [\"MONITOR\", \"NOBODY\"]\n"),
                      "roles.MONITOR.send_to", "unknown role 'NOBODY'");
  EXPECT_NO_THROW((void)policy::parse(
      edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nsend_to = [\"*\", \"MONITOR\"]\n"), "t"));
}

TEST(TopicPatterns, ConcreteTopicsPatternsAndCover) {
  EXPECT_TRUE(is_concrete_topic("metrics/cpu"));
  EXPECT_TRUE(is_concrete_topic("a.b-c_d/0"));
  for (const char* t : {"", "metrics/*", "metrics/>", "a//b", "/a", "a/", "sp ace", "a/b\n"}) EXPECT_FALSE(is_concrete_topic(t)) << t;
  EXPECT_TRUE(is_topic_pattern("metrics/*/load"));
  EXPECT_TRUE(is_topic_pattern(">"));
  for (const char* t : {"", "metrics/>/x", "a//b", "x*/y", "a/b>"}) EXPECT_FALSE(is_topic_pattern(t)) << t;

  EXPECT_TRUE(pattern_covers("metrics/>", "metrics/cpu"));
  EXPECT_TRUE(pattern_covers("metrics/>", "metrics/*/x"));
  EXPECT_TRUE(pattern_covers("metrics/>", "metrics/>"));
  EXPECT_FALSE(pattern_covers("metrics/>", "metrics"));
  EXPECT_TRUE(pattern_covers("metrics/*", "metrics/cpu"));
  EXPECT_TRUE(pattern_covers("metrics/*", "metrics/*"));
  EXPECT_FALSE(pattern_covers("metrics/*", "metrics/>")) << "'>' reaches metrics/a/b, which '*' does not";
  EXPECT_FALSE(pattern_covers("metrics/cpu", "metrics/*"));
  EXPECT_TRUE(pattern_covers(">", "anything/at/all"));
  EXPECT_FALSE(pattern_covers("a/*/c", "a/b"));
}

TEST(TopicPatterns, PublishTakesConcreteTopicsSubscribeTakesCoveredPatterns) {
  const policy& p = shipped();
  EXPECT_EQ(p.check_publish("MONITOR", "metrics/*").code(), status_code::invalid_field);
  EXPECT_EQ(p.check_publish("MONITOR", "metrics/>").code(), status_code::invalid_field);
  EXPECT_TRUE(p.check_publish("MONITOR", "metrics/cpu/load"));
  EXPECT_TRUE(p.check_subscribe("OPTIMIZER", "metrics/>"));
  EXPECT_TRUE(p.check_subscribe("OPTIMIZER", "metrics/*/load"));
  EXPECT_EQ(p.check_subscribe("OPTIMIZER", "debug/>").code(), status_code::acl_denied);
  EXPECT_EQ(p.check_subscribe("OPTIMIZER", ">").code(), status_code::acl_denied) << "more than its ACL";
  EXPECT_TRUE(p.check_subscribe("DIRECTOR", ">"));
  EXPECT_EQ(p.check_subscribe("OPTIMIZER", "metrics/>/x").code(), status_code::invalid_field);
}

TEST(PolicyValidation, BadTopicPattern) {
  for (std::string_view pattern : {"", "a//b", "/a", "a/", ">/a", "a/>/b", "a b", "a/**", "a/#"}) {
    SCOPED_TRACE(pattern);
    std::string list = "[\"" + std::string(pattern) + "\"]";
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\npublish = " + list + "\n"),
                        "roles.MONITOR.publish", "is not a topic pattern");
    expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nsubscribe = " + list + "\n"),
                        "roles.MONITOR.subscribe", "is not a topic pattern");
    expect_policy_error(edit(kMinimal, "[roles.MONITOR]", "[defaults]\nsubscribe = " + list + "\n\n[roles.MONITOR]"),
                        "defaults.subscribe", "is not a topic pattern");
  }
  EXPECT_NO_THROW((void)policy::parse(
      edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\npublish = [\"metrics/>\", \"a/*/c\", \">\", \"x.y_z-1\"]\n"),
      "t"));
}

TEST(PolicyValidation, AgentPins) {
  const std::string fp(64, 'a');
  auto with_agents = [](const std::string& agents) { return std::string(kMinimal) + "\n" + agents; };
  expect_policy_error(with_agents("[agents.monitor-1]\nrole = \"NOBODY\"\n"), "agents.monitor-1.role",
                      "unknown role 'NOBODY'");
  expect_policy_error(with_agents("[agents.monitor-1]\nfingerprint = \"" + fp + "\"\n"), "agents.monitor-1.role",
                      "missing");
  for (const std::string& bad : {std::string(63, 'a'), std::string(66, 'a'), std::string(63, 'a') + "g", std::string()}) {
    SCOPED_TRACE(bad);
    expect_policy_error(with_agents("[agents.monitor-1]\nrole = \"MONITOR\"\nfingerprint = \"" + bad + "\"\n"),
                        "agents.monitor-1.fingerprint", "must be 64 hex digits");
  }
  expect_policy_error(with_agents("[agents.monitor-1]\nrole = \"MONITOR\"\nfp = \"" + fp + "\"\n"),
                      "agents.monitor-1.fp", "unknown key");
  expect_policy_error(edit(kMinimal, "version = 1\n", "version = 1\nagents = 1\n"), "agents", "must be a table");

  // Top-level keys such as `revoked` precede the first table.
  policy p = policy::parse(edit(kMinimal, "version = 1\n", "version = 1\nrevoked = [\"old-1\"]\n") +
                               "\n[agents.monitor-1]\nrole = \"MONITOR\"\nfingerprint = \"" + fp +
                               "\"\n\n[agents.monitor-2]\nrole = \"MONITOR\"\n",
                           "t");
  ASSERT_NE(p.find_pin("monitor-1"), nullptr);
  EXPECT_EQ(p.find_pin("monitor-1")->role, "MONITOR");
  EXPECT_EQ(p.find_pin("monitor-1")->fingerprint, fp);
  ASSERT_NE(p.find_pin("monitor-2"), nullptr);
  EXPECT_EQ(p.find_pin("monitor-2")->fingerprint, "");
  EXPECT_EQ(p.find_pin("monitor-3"), nullptr);
  EXPECT_TRUE(p.is_revoked("old-1"));
  EXPECT_FALSE(p.is_revoked("monitor-1"));
}

// in_role / in_defaults add one line to kMinimal's MONITOR role / a new [defaults].
std::string in_role(const std::string& line) { return edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\n" + line + "\n"); }
std::string in_defaults(const std::string& line) {
  return edit(kMinimal, "[roles.MONITOR]", "[defaults]\n" + line + "\n\n[roles.MONITOR]");
}

TEST(PolicyValidation, BatchMaxLeavesOutOfRange) {
  for (std::string v : {"0", "-1", "65537", "1000000", "9223372036854775807"}) {
    SCOPED_TRACE(v);
    expect_policy_error(in_role("batch_max_leaves = " + v), "roles.MONITOR.batch_max_leaves",
                        "must be from 1 to 65536, not " + v);
    expect_policy_error(in_defaults("batch_max_leaves = " + v), "defaults.batch_max_leaves",
                        "must be from 1 to 65536, not " + v);
  }
}

TEST(PolicyValidation, BatchMaxDelayOutOfRange) {
  for (std::string v : {"-1", "1001", "60000"}) {
    SCOPED_TRACE(v);
    expect_policy_error(in_role("batch_max_delay_ms = " + v), "roles.MONITOR.batch_max_delay_ms",
                        "must be from 0 to 1000, not " + v);
    expect_policy_error(in_defaults("batch_max_delay_ms = " + v), "defaults.batch_max_delay_ms",
                        "must be from 0 to 1000, not " + v);
  }
}

TEST(PolicyValidation, BatchLimitsAreIntegers) {
  for (std::string v : {"\"1024\"", "1024.0", "2.5", "true", "[16]", "{ n = 1 }", "1979-05-27"}) {
    SCOPED_TRACE(v);
    expect_policy_error(in_role("batch_max_leaves = " + v), "roles.MONITOR.batch_max_leaves",
                        "must be an integer from 1 to 65536");
    expect_policy_error(in_role("batch_max_delay_ms = " + v), "roles.MONITOR.batch_max_delay_ms",
                        "must be an integer from 0 to 1000");
    expect_policy_error(in_defaults("batch_max_leaves = " + v), "defaults.batch_max_leaves",
                        "must be an integer from 1 to 65536");
    expect_policy_error(in_defaults("batch_max_delay_ms = " + v), "defaults.batch_max_delay_ms",
                        "must be an integer from 0 to 1000");
  }
}

TEST(PolicyValidation, BatchLimitKeysAreSpelledExactly) {
  expect_policy_error(in_role("batch_max_leafs = 16"), "roles.MONITOR.batch_max_leafs", "unknown key");
  expect_policy_error(in_defaults("batch_max_delay = 2"), "defaults.batch_max_delay", "unknown key");
}

TEST(PolicyValidation, MissingFile) {
  const std::string path = "/nonexistent-agentbus-dir/policy.toml";
  try {
    (void)policy::load_file(path);
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const policy_error& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_EQ(e.field(), "(file)");
    EXPECT_EQ(std::string(e.what()), path + ": (file): cannot open for reading");
  }
}

TEST(PolicyValidation, LoadFileNamesThePathInErrors) {
  std::string tmpl = (fs::temp_directory_path() / "agentbus-policy-test-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path path = fs::path(tmpl) / "bad-policy.toml";
  {
    std::ofstream out(path);
    out << edit(kRsa, "3072", "1024");
  }
  try {
    (void)policy::load_file(path);
    ADD_FAILURE() << "an invalid file was accepted";
  } catch (const policy_error& e) {
    EXPECT_EQ(e.file(), path.string());
    EXPECT_EQ(e.field(), "suites.r.rsa_bits");
    EXPECT_EQ(std::string(e.what()).rfind(path.string() + ": suites.r.rsa_bits: ", 0), 0u) << e.what();
  }
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace agentbus

namespace agentbus {
namespace {

// ---------------------------------------------------------------------------
// Enrolment modes, revoked keys and attestation (issue 11).
// ---------------------------------------------------------------------------

TEST(EnrolmentPolicy, RolesEnrolByTokenUnlessTheySayOtherwise) {
  policy p = policy::parse(kMinimal, "test.toml");
  EXPECT_EQ(p.find_role("MONITOR")->enrolment, enrolment_mode::token) << "fail closed: no name is first-come";
  EXPECT_FALSE(p.find_role("MONITOR")->require_attestation);
  for (const auto& r : shipped().roles()) {
    EXPECT_EQ(r.enrolment, enrolment_mode::token) << r.name;
    EXPECT_FALSE(r.require_attestation) << r.name << ": the shipped file trusts no EK CA";
  }
  policy open = policy::parse(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nenrolment = \"open\"\n"), "test.toml");
  EXPECT_EQ(open.find_role("MONITOR")->enrolment, enrolment_mode::open);
  expect_policy_error(edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nenrolment = \"first-come\"\n"),
                      "roles.MONITOR.enrolment", "must be \"pinned\", \"token\" or \"open\"");
  // A pinned role's pin must name a key.
  const std::string pinned = edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nenrolment = \"pinned\"\n");
  expect_policy_error(pinned + "\n[agents.m1]\nrole = \"MONITOR\"\n", "agents.m1.fingerprint", "missing");
  policy ok = policy::parse(pinned + "\n[agents.m1]\nrole = \"MONITOR\"\nfingerprint = \"" + std::string(64, 'A') + "\"\n",
                            "test.toml");
  EXPECT_EQ(ok.find_pin("m1")->fingerprint, std::string(64, 'a'));
}

TEST(EnrolmentPolicy, RevokedKeysAreFingerprints) {
  policy p = policy::parse(std::string(kMinimal) + "", "test.toml");
  EXPECT_FALSE(p.is_key_revoked(std::string(64, 'b')));
  std::string text(kMinimal);
  text.insert(text.find("\n[suites"), "\nrevoked_keys = [\"" + std::string(64, 'B') + "\"]");
  policy r = policy::parse(text, "test.toml");
  EXPECT_TRUE(r.is_key_revoked(std::string(64, 'b'))) << "compared as lower case";
  std::string bad(kMinimal);
  bad.insert(bad.find("\n[suites"), "\nrevoked_keys = [\"abc\"]");
  expect_policy_error(bad, "revoked_keys", "must be 64 hex digits");
}

// What agentbus-key prints ("sha256:<hex>") is accepted wherever the policy takes a
// fingerprint, in either case, and stored as the 64 lower-case digits.
TEST(EnrolmentPolicy, FingerprintsAreReadAsEveryToolPrintsThem) {
  const std::string hex(64, 'c'), printed = "sha256:" + std::string(64, 'C');
  std::string text(kMinimal);
  text.insert(text.find("\n[suites"), "\nrevoked_keys = [\"" + printed + "\", \"SHA256:" + std::string(64, 'd') + "\"]");
  text += "\n[agents.m1]\nrole = \"MONITOR\"\nfingerprint = \"" + printed + "\"\n";
  text += "\n[operators.alice]\nfingerprint = \"" + printed + "\"\n";
  policy p = policy::parse(text, "test.toml");
  EXPECT_TRUE(p.is_key_revoked(hex));
  EXPECT_TRUE(p.is_key_revoked(std::string(64, 'd')));
  EXPECT_EQ(p.find_pin("m1")->fingerprint, hex);
  ASSERT_NE(p.find_operator(hex), nullptr);
  EXPECT_EQ(p.find_operator(hex)->name, "alice");
  for (const std::string& bad : {"sha256:" + std::string(63, 'c'), "sha1:" + std::string(64, 'c'), "sha256:" + std::string(64, 'g'),
                                "sha256: " + std::string(63, 'c'), std::string(64, 'c') + ":sha256"}) {
    std::string t(kMinimal);
    t += "\n[operators.alice]\nfingerprint = \"" + bad + "\"\n";
    expect_policy_error(t, "operators.alice.fingerprint", "must be 64 hex digits");
  }
}

TEST(Fingerprint, ParseAcceptsBothPrintedFormsAndNothingElse) {
  const std::string hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  EXPECT_EQ(parse_fingerprint(hex), hex);
  EXPECT_EQ(parse_fingerprint("sha256:" + hex), hex);
  EXPECT_EQ(parse_fingerprint("SHA256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF"), hex);
  EXPECT_FALSE(parse_fingerprint(""));
  EXPECT_FALSE(parse_fingerprint("sha256:"));
  EXPECT_FALSE(parse_fingerprint(hex.substr(1)));
  EXPECT_FALSE(parse_fingerprint(hex + "0"));
  EXPECT_FALSE(parse_fingerprint("sha384:" + hex));
  EXPECT_FALSE(parse_fingerprint("sha256:" + hex.substr(0, 63) + "z"));
  EXPECT_FALSE(parse_fingerprint("sha256:sha256:" + hex.substr(7)));
}

TEST(EnrolmentPolicy, AttestationNeedsATrustedEkCaReadFromFiles) {
  const std::string requiring = edit(kMinimal, "suite = \"s1\"\n", "suite = \"s1\"\nrequire_attestation = true\n");
  expect_policy_error(requiring, "roles.MONITOR.require_attestation", "no [attestation.ek_ca.<name>] is trusted");
  // A CA whose root is read relative to the policy file.
  const fs::path dir = fs::temp_directory_path() / ("agentbus-policy-test-" + std::to_string(::getpid()));
  fs::create_directories(dir / "ek-ca");
  {
    std::ofstream(dir / "ek-ca" / "root.pem") << read_text(AGENTBUS_SOURCE_DIR "/schemas/vectors/keys/p256.pub.pem");
  }
  {
    std::ofstream(dir / "policy.toml") << requiring << "\n[attestation.ek_ca.vendor]\nroot = \"ek-ca/root.pem\"\n";
  }
  try {
    (void)policy::load_file(dir / "policy.toml");
    ADD_FAILURE() << "a public key was taken for a certificate";
  } catch (const policy_error& e) {
    EXPECT_EQ(e.field(), "attestation.ek_ca.vendor.root");
    EXPECT_NE(std::string(e.what()).find("is not a PEM certificate"), std::string::npos) << e.what();
  }
  // A real certificate (generated here with the openssl command line).
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=test-ek-ca -days 1"
                         " -keyout " + (dir / "ek-ca" / "key.pem").string() + " -out " + (dir / "ek-ca" / "root.pem").string() +
                         " >/dev/null 2>&1")
                            .c_str()),
            0);
  policy p = policy::load_file(dir / "policy.toml");
  ASSERT_EQ(p.ek_cas().size(), 1u);
  EXPECT_EQ(p.ek_cas()[0].name, "vendor");
  EXPECT_FALSE(p.ek_cas()[0].simulator);
  EXPECT_NE(p.ek_cas()[0].root_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_TRUE(p.find_role("MONITOR")->require_attestation);
  {
    std::ofstream(dir / "policy.toml") << requiring << "\n[attestation.ek_ca.vendor]\nroot = \"ek-ca/missing.pem\"\n";
  }
  EXPECT_THROW((void)policy::load_file(dir / "policy.toml"), policy_error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace agentbus
