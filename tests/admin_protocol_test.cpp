// admin_protocol_test.cpp — the admin endpoint's protocol (broker/admin_protocol.hpp):
// operator-signed requests round-trip and every way of forging, replaying or
// mangling one is refused with its stable code; the read-only results have the
// documented shapes over a real registry; the policy's allowed edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "admin_protocol.hpp"
#include "agentbus/crypto.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "registry.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus::broker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::scoped_temp_dir;

constexpr std::int64_t kMinute = 60 * 1000;

suite suite_of(const std::string& role) { return *policy::builtin_default().suite_for(role); }

// policy_with_operators is the shipped policy plus an [operators.NAME] table per key.
std::shared_ptr<const policy> policy_with_operators(const std::vector<std::pair<std::string, std::string>>& ops) {
  std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  for (const auto& [name, fp] : ops) text += "\n[operators." + name + "]\nfingerprint = \"" + fp + "\"\n";
  return std::make_shared<const policy>(policy::parse(text, "test-policy"));
}

// The broker the requests are for (what the broker's admin_state says it is).
const std::string kBrokerFp = std::string(64, 'b');
const json kBrokerIdentity = json{{"name", "test-broker"}, {"fingerprint", kBrokerFp}, {"suite", "ecdsa-p256-sha256"}};

std::string signed_by(const json& inner, identity_key& key, const std::string& name, const std::string& broker = kBrokerFp) {
  return make_signed_request(inner, key, name, broker);
}

json revoke_request(const std::string& agent = "monitor-1") {
  return json{{"op", "revoke"}, {"agent", agent}, {"reason", "stolen laptop"}};
}

class AdminSignature : public ::testing::Test {
 protected:
  void SetUp() override {
    alice_ = identity_key::create_software(tmp_.path() / "alice", "MONITOR", suite_of("MONITOR"));
    mallory_ = identity_key::create_software(tmp_.path() / "mallory", "MONITOR", suite_of("MONITOR"));
    pol_ = policy_with_operators({{"alice", alice_->public_key().fingerprint_hex()}});
  }

  scoped_temp_dir tmp_;
  std::unique_ptr<identity_key> alice_, mallory_;
  std::shared_ptr<const policy> pol_;
};

TEST_F(AdminSignature, SignedRequestRoundTripsWithTheOperatorNameFromThePolicy) {
  admin_verifier v(pol_, kBrokerFp);
  std::string outer = signed_by(revoke_request(), *alice_, "alice");
  auto r = v.verify(outer, now_unix_ms());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->operator_name, "alice");
  EXPECT_EQ(r->inner.at("op"), "revoke");
  EXPECT_EQ(r->inner.at("agent"), "monitor-1");
  EXPECT_EQ(r->inner.at("reason"), "stolen laptop");
  EXPECT_EQ(r->inner.at("hash"), "sha256");
  EXPECT_EQ(r->inner.at("nonce").get<std::string>().size(), 32u);

  // An operator who gives no name is named by the policy.
  auto unnamed = v.verify(signed_by(revoke_request(), *alice_, ""), now_unix_ms());
  ASSERT_TRUE(unnamed.ok()) << unnamed.error().to_string();
  EXPECT_EQ(unnamed->operator_name, "alice");
}

TEST_F(AdminSignature, RsaPssOperatorKeysVerifyToo) {
  auto carol = identity_key::create_software(tmp_.path() / "carol", "DIRECTOR", suite_of("DIRECTOR"));
  admin_verifier v(policy_with_operators({{"carol", carol->public_key().fingerprint_hex()}}), kBrokerFp);
  auto r = v.verify(signed_by(revoke_request(), *carol, "carol"), now_unix_ms());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->inner.at("hash"), "sha384");
}

TEST_F(AdminSignature, KeyNotListedAsOperatorIsAclDenied) {
  admin_verifier v(pol_, kBrokerFp);
  auto r = v.verify(signed_by(revoke_request(), *mallory_, "alice"), now_unix_ms());
  EXPECT_EQ(r.error().code(), status_code::acl_denied) << r.error().to_string();
}

TEST_F(AdminSignature, OperatorClaimingAnotherNameIsAclDenied) {
  auto bob = identity_key::create_software(tmp_.path() / "bob", "MONITOR", suite_of("MONITOR"));
  admin_verifier v(policy_with_operators({{"alice", alice_->public_key().fingerprint_hex()},
                                          {"bob", bob->public_key().fingerprint_hex()}}), kBrokerFp);
  auto r = v.verify(signed_by(revoke_request(), *bob, "alice"), now_unix_ms());
  EXPECT_EQ(r.error().code(), status_code::acl_denied) << r.error().to_string();
}

TEST_F(AdminSignature, OperatorFingerprintInUpperCaseInThePolicyStillMatches) {
  std::string fp = alice_->public_key().fingerprint_hex();
  std::transform(fp.begin(), fp.end(), fp.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
  admin_verifier v(policy_with_operators({{"alice", fp}}), kBrokerFp);
  EXPECT_TRUE(v.verify(signed_by(revoke_request(), *alice_, "alice"), now_unix_ms()).ok());
}

TEST_F(AdminSignature, TamperedInnerIsBadSignature) {
  admin_verifier v(pol_, kBrokerFp);
  json outer = json::parse(signed_by(revoke_request("monitor-1"), *alice_, "alice"));
  std::string inner = outer.at("signed");
  auto at = inner.find("monitor-1");
  ASSERT_NE(at, std::string::npos);
  inner.replace(at, 9, "monitor-2");  // still valid JSON, another victim
  outer["signed"] = inner;
  auto r = v.verify(outer.dump(), now_unix_ms());
  EXPECT_EQ(r.error().code(), status_code::bad_signature) << r.error().to_string();
}

TEST_F(AdminSignature, SignatureFromAnotherKeyOrGarbageIsBadSignature) {
  admin_verifier v(pol_, kBrokerFp);
  json outer = json::parse(signed_by(revoke_request(), *alice_, "alice"));
  json by_mallory = json::parse(signed_by(revoke_request(), *mallory_, "alice"));
  json swapped = outer;
  swapped["signature"] = by_mallory["signature"];
  EXPECT_EQ(v.verify(swapped.dump(), now_unix_ms()).error().code(), status_code::bad_signature);
  json garbage = outer;
  garbage["signature"] = "zz";
  EXPECT_EQ(v.verify(garbage.dump(), now_unix_ms()).error().code(), status_code::bad_signature);
  json empty = outer;
  empty["signature"] = "";
  EXPECT_EQ(v.verify(empty.dump(), now_unix_ms()).error().code(), status_code::bad_signature);
}

TEST_F(AdminSignature, TimestampOutsideFiveMinutesIsStale) {
  admin_verifier v(pol_, kBrokerFp);
  std::string outer = signed_by(revoke_request(), *alice_, "alice");
  EXPECT_EQ(v.verify(outer, now_unix_ms() + 6 * kMinute).error().code(), status_code::stale);
  EXPECT_EQ(v.verify(outer, now_unix_ms() - 6 * kMinute).error().code(), status_code::stale);
  // Stale attempts do not burn the nonce: the request is still good now.
  EXPECT_TRUE(v.verify(outer, now_unix_ms() + 4 * kMinute).ok());
}

TEST_F(AdminSignature, ReusedNonceIsReplayed) {
  admin_verifier v(pol_, kBrokerFp);
  std::string outer = signed_by(revoke_request(), *alice_, "alice");
  ASSERT_TRUE(v.verify(outer, now_unix_ms()).ok());
  EXPECT_EQ(v.verify(outer, now_unix_ms()).error().code(), status_code::replayed);
  // A fresh request (new nonce) from the same operator is fine.
  EXPECT_TRUE(v.verify(signed_by(revoke_request(), *alice_, "alice"), now_unix_ms()).ok());
}

// Issue 12, case 8: a request names the broker it is for; any other broker trusting
// the same operator refuses it, and so does an endpoint with no broker identity.
TEST_F(AdminSignature, ARequestForAnotherBrokerIsAclDenied) {
  admin_verifier v(pol_, kBrokerFp);
  auto r = v.verify(signed_by(revoke_request(), *alice_, "alice", std::string(64, 'c')), now_unix_ms());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), status_code::acl_denied);
  EXPECT_NE(r.error().detail().find("addressed to broker sha256:cccccccccccccccc"), std::string::npos) << r.error().detail();
  // The same fingerprint in upper case is the same broker.
  std::string upper(64, 'B');
  EXPECT_TRUE(v.verify(signed_by(revoke_request(), *alice_, "alice", upper), now_unix_ms()).ok());
  admin_verifier nobody(pol_, "");
  EXPECT_EQ(nobody.verify(signed_by(revoke_request(), *alice_, "alice"), now_unix_ms()).error().code(), status_code::acl_denied);
  // Without the field, or with something else in it: refused before the signature.
  json inner = revoke_request();
  inner["operator"] = "alice";
  inner["timestamp"] = now_unix_ms();
  inner["nonce"] = std::string(32, 'a');
  inner["hash"] = "sha256";
  auto sign_inner = [&](const json& in) {
    const std::string text = in.dump();
    return json{{"signed", text}, {"public_key", alice_->public_key().pem()},
                {"signature", to_hex(*alice_->sign_message(as_bytes(text)))}}.dump();
  };
  EXPECT_EQ(v.verify(sign_inner(inner), now_unix_ms()).error().code(), status_code::malformed);
  inner["broker"] = "monitor-1";
  EXPECT_EQ(v.verify(sign_inner(inner), now_unix_ms()).error().code(), status_code::invalid_field);
}

TEST_F(AdminSignature, MalformedRequestsAreMalformed) {
  admin_verifier v(pol_, kBrokerFp);
  const std::int64_t now = now_unix_ms();
  for (std::string bad : {"", "not json", "[1,2]", "{}", R"({"signed":1,"public_key":"x","signature":"00"})",
                          R"({"signed":"{}","public_key":"not a pem","signature":"00"})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(v.verify(bad, now).error().code(), status_code::malformed);
  }
  // Properly signed by an operator, but the signed text is not a JSON object.
  const std::string inner = "revoke monitor-1 please";
  auto sig = alice_->sign_message(as_bytes(inner));
  ASSERT_TRUE(sig.ok());
  json outer{{"signed", inner}, {"public_key", alice_->public_key().pem()}, {"signature", to_hex(*sig)}};
  EXPECT_EQ(v.verify(outer.dump(), now).error().code(), status_code::malformed);
  // Missing nonce / timestamp.
  json partial = revoke_request();
  partial["hash"] = "sha256";
  const std::string partial_text = partial.dump();
  auto sig2 = alice_->sign_message(as_bytes(partial_text));
  ASSERT_TRUE(sig2.ok());
  outer = json{{"signed", partial_text}, {"public_key", alice_->public_key().pem()}, {"signature", to_hex(*sig2)}};
  EXPECT_EQ(v.verify(outer.dump(), now).error().code(), status_code::malformed);
  // Oversized.
  EXPECT_EQ(v.verify(std::string(kAdminMaxRequestBytes + 1, ' '), now).error().code(), status_code::too_large);
}

TEST_F(AdminSignature, HashTheKeysSuitesDoNotUseIsRefused) {
  admin_verifier v(pol_, kBrokerFp);
  json outer = json::parse(signed_by(revoke_request(), *alice_, "alice"));
  json inner = json::parse(outer.at("signed").get<std::string>());
  inner["hash"] = "sha512";  // no policy suite pairs ECDSA P-256 with SHA-512
  outer["signed"] = inner.dump();
  EXPECT_EQ(v.verify(outer.dump(), now_unix_ms()).error().code(), status_code::suite_mismatch);
}

TEST_F(AdminSignature, ReadOnlyOpsCannotBeSignedInstead) {
  admin_verifier v(pol_, kBrokerFp);
  auto r = v.verify(signed_by(json{{"op", "agents"}}, *alice_, "alice"), now_unix_ms());
  EXPECT_EQ(r.error().code(), status_code::invalid_field);
}

// ---------------------------------------------------------------- handler over a registry

agent_record agent(const std::string& name, const std::string& role, const std::string& suite_name,
                   const std::string& prot = "tpm") {
  agent_record a;
  a.name = name;
  a.role = role;
  a.suite = suite_name;
  a.fingerprint = to_hex(crypto::digest(hash_algorithm::sha256, as_bytes(name)));
  a.public_key_pem = "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n";
  a.protection = prot;
  a.tpm_manufacturer = prot == "tpm" ? "IBM" : "";
  a.tpm_simulator = prot == "tpm";
  a.enrolled_at = 1'700'000'000'000;
  a.last_seen = 1'700'000'100'000;
  return a;
}

class live_state : public registry_admin_state {
 public:
  using registry_admin_state::registry_admin_state;
  bool online(std::string_view agent) override { return agent == "director-1"; }
  nlohmann::json broker_identity() override { return kBrokerIdentity; }
  nlohmann::json stats() override { return json{{"counters", json::array()}}; }
  status revoke(const std::string& agent, const std::string& reason, const std::string& op) override {
    revoked_by = op;
    return registry_admin_state::revoke(agent, reason, op);
  }
  std::string revoked_by;
};

class AdminHandler : public AdminSignature {
 protected:
  void SetUp() override {
    AdminSignature::SetUp();
    reg_.emplace(tmp_.path() / "registry.db");
    reg_->upsert_agent(agent("director-1", "DIRECTOR", "rsa3072-pss-sha384"));
    reg_->upsert_agent(agent("monitor-1", "MONITOR", "ecdsa-p256-sha256"));
    reg_->upsert_agent(agent("debugger-1", "DEBUGGER", "ecdsa-p256-sha256", "software"));
    reg_->record_session("monitor-1", "director-1", "P-256", "hmac-sha256", 1'700'000'050'000, false);
    reg_->record_session("debugger-1", "monitor-1", "P-256", "hmac-sha256", 1'700'000'050'000, false);
    reg_->flush({{"monitor-1", "director-1", 12}, {"director-1", "monitor-1", 7}},
                {{"debugger-1", "acl_denied", "role DEBUGGER may not send to role DIRECTOR", 3, 1'700'000'060'000}}, {});
    reg_->revoke("debugger-1", "lost", 1'700'000'070'000);
    state_.emplace(*reg_);
    handler_.emplace(pol_, *state_);
  }

  json ask(const std::string& request) {
    json reply = json::parse(handler_->handle(request, now_unix_ms()));
    EXPECT_TRUE(reply.contains("ok")) << reply.dump();
    return reply;
  }

  std::optional<registry> reg_;
  std::optional<live_state> state_;
  std::optional<admin_handler> handler_;
};

TEST_F(AdminHandler, AgentsHaveTheRegistryFieldsAndOnline) {
  json r = ask(R"({"op":"agents"})");
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  const json& agents = r.at("result");
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_EQ(agents[0].at("name"), "debugger-1");  // sorted by name
  for (const char* key : {"name", "role", "suite", "fingerprint", "public_key_pem", "protection", "tpm_manufacturer",
                          "tpm_simulator", "enrolled_at", "last_seen", "revoked", "revoked_reason", "revoked_at",
                          "pending_fingerprint", "pending_public_key_pem", "online"})
    EXPECT_TRUE(agents[0].contains(key)) << key;
  EXPECT_EQ(agents[0].at("protection"), "software");
  EXPECT_EQ(agents[0].at("revoked"), true);
  EXPECT_EQ(agents[0].at("revoked_reason"), "lost");
  EXPECT_EQ(agents[1].at("name"), "director-1");
  EXPECT_EQ(agents[1].at("online"), true);
  EXPECT_EQ(agents[1].at("enrolled_at"), 1'700'000'000'000);
  EXPECT_TRUE(agents[1].at("revoked_at").is_null());
  EXPECT_TRUE(agents[1].at("pending_fingerprint").is_null());
}

TEST_F(AdminHandler, EdgesAreMarkedRevokedWhenAnEndIs) {
  json r = ask(R"({"op":"edges"})");
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  const json& edges = r.at("result");
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].at("a"), "debugger-1");
  EXPECT_EQ(edges[0].at("revoked"), true);
  EXPECT_EQ(edges[1].at("a"), "director-1");
  EXPECT_EQ(edges[1].at("b"), "monitor-1");
  EXPECT_EQ(edges[1].at("revoked"), false);
  EXPECT_EQ(edges[1].at("curve"), "P-256");
  EXPECT_EQ(edges[1].at("messages_a_to_b"), 7u);
  EXPECT_EQ(edges[1].at("messages_b_to_a"), 12u);
}

TEST_F(AdminHandler, ShowViolationsGraphAndStats) {
  json show = ask(R"({"op":"show","agent":"monitor-1"})");
  ASSERT_TRUE(show.at("ok").get<bool>()) << show.dump();
  EXPECT_EQ(show.at("result").at("agent").at("name"), "monitor-1");
  EXPECT_EQ(show.at("result").at("edges").size(), 2u);
  EXPECT_EQ(show.at("result").at("refusals").size(), 0u);

  json unknown = ask(R"({"op":"show","agent":"nobody"})");
  EXPECT_EQ(unknown.at("ok"), false);
  EXPECT_EQ(unknown.at("error").at("code"), "unknown_agent");

  json v = ask(R"({"op":"violations"})");
  ASSERT_EQ(v.at("result").size(), 1u);
  EXPECT_EQ(v.at("result")[0].at("reason"), "acl_denied");
  EXPECT_EQ(v.at("result")[0].at("count"), 3u);

  json g = ask(R"({"op":"graph"})");
  ASSERT_TRUE(g.at("ok").get<bool>()) << g.dump();
  for (const char* key : {"agents", "edges", "policy_edges", "refusals"}) EXPECT_TRUE(g.at("result").at(key).is_array()) << key;
  EXPECT_FALSE(g.at("result").at("policy_edges").empty());

  json s = ask(R"({"op":"stats"})");
  EXPECT_TRUE(s.at("result").contains("counters"));
}

TEST_F(AdminHandler, BadRequestsGetTypedErrors) {
  EXPECT_EQ(ask("not json").at("error").at("code"), "malformed");
  EXPECT_EQ(ask("[]").at("error").at("code"), "malformed");
  EXPECT_EQ(ask(R"({"op":42})").at("error").at("code"), "malformed");
  EXPECT_EQ(ask(R"({"op":"frobnicate"})").at("error").at("code"), "invalid_field");
  EXPECT_EQ(ask(R"({"op":"show"})").at("error").at("code"), "malformed");
}

TEST_F(AdminHandler, UnsignedChangeIsRefusedAndChangesNothing) {
  json r = ask(R"({"op":"revoke","agent":"monitor-1","reason":"because"})");
  EXPECT_EQ(r.at("ok"), false);
  EXPECT_EQ(r.at("error").at("code"), "acl_denied");
  EXPECT_FALSE(reg_->find_agent("monitor-1")->revoked);
}

TEST_F(AdminHandler, SignedRevokeTakesEffect) {
  json r = ask(signed_by(revoke_request("monitor-1"), *alice_, "alice"));
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  EXPECT_EQ(r.at("result").at("op"), "revoke");
  EXPECT_EQ(r.at("result").at("operator"), "alice");
  EXPECT_EQ(r.at("result").at("agent_record").at("revoked"), true);
  EXPECT_EQ(state_->revoked_by, "alice");
  auto m = reg_->find_agent("monitor-1");
  EXPECT_TRUE(m->revoked);
  EXPECT_EQ(m->revoked_reason, "stolen laptop");
  // Now both of monitor-1's edges are revoked.
  const json edges = ask(R"({"op":"edges"})");  // kept: a range-for over a temporary's member dangles
  for (const auto& e : edges.at("result")) EXPECT_EQ(e.at("revoked"), true) << e.dump();

  json by_mallory = ask(signed_by(revoke_request("director-1"), *mallory_, "alice"));
  EXPECT_EQ(by_mallory.at("error").at("code"), "acl_denied");
  EXPECT_FALSE(reg_->find_agent("director-1")->revoked);

  json unknown = ask(signed_by(revoke_request("nobody"), *alice_, "alice"));
  EXPECT_EQ(unknown.at("error").at("code"), "unknown_agent");
}

// Issue 12, case 8: the nonces of requests carried out live in the registry, so a
// handler over the same registry (the broker restarted) still refuses a replay, and a
// request refused before its nonce check does not burn the nonce.
TEST_F(AdminHandler, ARequestCarriedOutIsReplayedEvenAfterARestart) {
  const std::string request = signed_by(json{{"op", "reset_counters"}}, *alice_, "alice");
  ASSERT_TRUE(ask(request).at("ok").get<bool>());
  EXPECT_EQ(ask(request).at("error").at("code"), "replayed");
  handler_.reset();
  state_.reset();
  reg_.reset();
  reg_.emplace(tmp_.path() / "registry.db");
  state_.emplace(*reg_);
  handler_.emplace(pol_, *state_);
  json again = ask(request);
  EXPECT_EQ(again.at("error").at("code"), "replayed") << again.dump();
  // Nonces leave the registry once their requests are stale.
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'e'), 1000, 0, 10), registry::nonce_outcome::recorded);
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'e'), 1000, 0, 10), registry::nonce_outcome::seen);
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'f'), 5000, 2000, 10), registry::nonce_outcome::recorded);
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'e'), 1000, 2000, 10), registry::nonce_outcome::recorded);
  // Bounded: refused, not forgotten, when full.
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'd'), 5000, 2000, 3), registry::nonce_outcome::recorded);
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'c'), 5000, 2000, 3), registry::nonce_outcome::full);
  EXPECT_EQ(reg_->record_admin_nonce(std::string(32, 'f'), 5000, 2000, 3), registry::nonce_outcome::seen);
}

TEST_F(AdminHandler, ApproveNeedsThePendingFingerprint) {
  const std::string fp(64, 'e');
  const std::string before = reg_->find_agent("monitor-1")->fingerprint;
  ASSERT_TRUE(reg_->set_pending_key({"monitor-1", fp, "PEM"}));
  json wrong = ask(signed_by(json{{"op", "approve"}, {"agent", "monitor-1"}, {"fingerprint", std::string(64, 'f')}},
                                       *alice_, "alice"));
  EXPECT_EQ(wrong.at("error").at("code"), "key_changed") << wrong.dump();
  EXPECT_EQ(reg_->find_agent("monitor-1")->fingerprint, before);

  json none = ask(signed_by(json{{"op", "approve"}, {"agent", "director-1"}, {"fingerprint", fp}}, *alice_, "alice"));
  EXPECT_EQ(none.at("error").at("code"), "invalid_field") << none.dump();

  json ok = ask(signed_by(json{{"op", "approve"}, {"agent", "monitor-1"}, {"fingerprint", fp}}, *alice_, "alice"));
  ASSERT_TRUE(ok.at("ok").get<bool>()) << ok.dump();
  auto m = reg_->find_agent("monitor-1");
  EXPECT_EQ(m->fingerprint, fp);
  EXPECT_TRUE(m->pending_fingerprint.empty());
}

TEST_F(AdminHandler, ResetCountersClearsRefusals) {
  json r = ask(signed_by(json{{"op", "reset_counters"}, {"agent", "debugger-1"}}, *alice_, "alice"));
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  EXPECT_TRUE(reg_->refusals().empty());
}

TEST_F(AdminHandler, ReadOnlyStateRefusesChanges) {
  struct read_only : admin_state {
    std::vector<agent_record> agents() override { return {agent("monitor-1", "MONITOR", "ecdsa-p256-sha256")}; }
    std::optional<agent_record> find_agent(std::string_view) override { return agents()[0]; }
    std::vector<edge_record> edges() override { return {}; }
    std::vector<refusal_record> refusals() override { return {}; }
    std::vector<token_record> tokens() override { return {}; }
    std::vector<key_revocation> revoked_keys() override { return {}; }
    nlohmann::json broker_identity() override { return kBrokerIdentity; }
  } ro;
  admin_handler h(pol_, ro);
  json r = json::parse(h.handle(signed_by(revoke_request(), *alice_, "alice"), now_unix_ms()));
  EXPECT_EQ(r.at("error").at("code"), "refused");
  json t = json::parse(h.handle(
      signed_by(json{{"op", "token_create"}, {"agent", "monitor-9"}, {"role", "MONITOR"}}, *alice_, "alice"),
      now_unix_ms()));
  EXPECT_EQ(t.at("error").at("code"), "refused");
}

// token_create: operator-signed only; the reply carries the token once, the registry
// only its hash; bad names, roles, fingerprints and lifetimes are refused.
TEST_F(AdminHandler, TokenCreateStoresOnlyTheHash) {
  json unsigned_req = ask(json{{"op", "token_create"}, {"agent", "monitor-9"}, {"role", "MONITOR"}}.dump());
  EXPECT_EQ(unsigned_req.at("error").at("code"), "acl_denied");
  json r = ask(signed_by(json{{"op", "token_create"}, {"agent", "monitor-9"}, {"role", "MONITOR"},
                                        {"ttl_seconds", 600}},
                                   *alice_, "alice"));
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  const std::string token = r.at("result").at("token").get<std::string>();
  ASSERT_EQ(token.size(), 64u);
  const bytes raw = from_hex(token);
  const std::string hash = to_hex(crypto::digest(hash_algorithm::sha256, raw));
  auto stored = reg_->find_token(hash);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->name, "monitor-9");
  EXPECT_EQ(stored->role, "MONITOR");
  EXPECT_EQ(stored->created_by, "alice");
  EXPECT_EQ(stored->expires_at - stored->created_at, 600'000);
  EXPECT_TRUE(stored->ek_fingerprint.empty());
  json bound = ask(signed_by(json{{"op", "token_create"}, {"agent", "monitor-9"}, {"role", "MONITOR"},
                                  {"ek_fingerprint", std::string(64, 'E')}},
                             *alice_, "alice"));
  ASSERT_TRUE(bound.at("ok").get<bool>()) << bound.dump();
  EXPECT_EQ(bound.at("result").at("token_record").at("ek_fingerprint"), std::string(64, 'e')) << "lower case";
  EXPECT_EQ(r.at("result").at("token_record").at("id"), hash.substr(0, 16));
  const std::string all = reg_->tokens().empty() ? "" : ask(json{{"op", "tokens"}}.dump()).dump();
  EXPECT_EQ(all.find(token), std::string::npos) << "the secret is never listed";
  EXPECT_EQ(all.find(hash), std::string::npos) << "nor its full hash";

  auto refused = [&](json inner, const char* code) {
    inner["op"] = "token_create";
    json e = ask(signed_by(inner, *alice_, "alice"));
    EXPECT_EQ(e.at("error").at("code"), code) << inner.dump();
  };
  refused({{"agent", "bad name!"}, {"role", "MONITOR"}}, "invalid_field");
  refused({{"agent", "monitor-9"}, {"role", "NOPE"}}, "unknown_role");
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"fingerprint", "abc"}}, "malformed");
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"fingerprint", 7}}, "malformed");
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"ek_fingerprint", "abc"}}, "malformed");
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"ek_fingerprint", 7}}, "malformed");  // not a silent unbound token
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"ttl_seconds", 0}}, "invalid_field");
  refused({{"agent", "monitor-9"}, {"role", "MONITOR"}, {"ttl_seconds", 8 * 24 * 3600}}, "invalid_field");
  refused({{"role", "MONITOR"}}, "malformed");
}

// revoke_key revokes the key under any name and the agents pinned to it.
TEST_F(AdminHandler, RevokeKeyRevokesItsAgents) {
  const std::string fp = reg_->find_agent("monitor-1")->fingerprint;
  json r = ask(signed_by(json{{"op", "revoke_key"}, {"fingerprint", fp}, {"reason", "stolen"}}, *alice_, "alice"));
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  EXPECT_EQ(r.at("result").at("revoked_agents"), json::array({"monitor-1"}));
  EXPECT_TRUE(reg_->find_agent("monitor-1")->revoked);
  ASSERT_TRUE(reg_->find_revoked_key(fp));
  const std::string other(64, '7');
  json r2 = ask(signed_by(json{{"op", "revoke_key"}, {"fingerprint", other}, {"reason", "lost"}}, *alice_, "alice"));
  ASSERT_TRUE(r2.at("ok").get<bool>()) << r2.dump();
  EXPECT_TRUE(r2.at("result").at("revoked_agents").empty());
  json list = ask(json{{"op", "revoked_keys"}}.dump());
  std::set<std::string> listed;
  for (const auto& k : list.at("result")) listed.insert(k.at("fingerprint").get<std::string>());
  EXPECT_TRUE(listed.count(fp) && listed.count(other)) << list.dump();
  json bad = ask(signed_by(json{{"op", "revoke_key"}, {"fingerprint", other}}, *alice_, "alice"));
  EXPECT_EQ(bad.at("error").at("code"), "malformed");
}

TEST_F(AdminHandler, RejectDiscardsThePendingKey) {
  const std::string fp(64, 'e');
  ASSERT_TRUE(reg_->set_pending_key({"monitor-1", fp, "PEM", 5, "tcp://192.0.2.1:9", "declared tpm"}));
  json shown = ask(json{{"op", "show"}, {"agent", "monitor-1"}}.dump());
  EXPECT_EQ(shown.at("result").at("agent").at("pending_address"), "tcp://192.0.2.1:9");
  EXPECT_EQ(shown.at("result").at("agent").at("pending_evidence"), "declared tpm");
  json wrong = ask(signed_by(json{{"op", "reject"}, {"agent", "monitor-1"}, {"fingerprint", std::string(64, 'f')}},
                                       *alice_, "alice"));
  EXPECT_EQ(wrong.at("error").at("code"), "invalid_field");
  json r = ask(signed_by(json{{"op", "reject"}, {"agent", "monitor-1"}, {"fingerprint", fp}}, *alice_, "alice"));
  ASSERT_TRUE(r.at("ok").get<bool>()) << r.dump();
  EXPECT_TRUE(reg_->find_agent("monitor-1")->pending_fingerprint.empty());
}

// ---------------------------------------------------------------- policy edges

TEST(TopicPatterns, OverlapIsTheNarrowestCommonPattern) {
  EXPECT_EQ(topic_patterns_overlap("metrics/>", ">"), "metrics/>");
  EXPECT_EQ(topic_patterns_overlap(">", "metrics/>"), "metrics/>");
  EXPECT_EQ(topic_patterns_overlap("metrics/>", "metrics/>"), "metrics/>");
  EXPECT_EQ(topic_patterns_overlap("a/*/c", "a/b/*"), "a/b/c");
  EXPECT_EQ(topic_patterns_overlap("a/*", "a/>"), "a/*");
  EXPECT_EQ(topic_patterns_overlap("a/b", "a/b"), "a/b");
  EXPECT_EQ(topic_patterns_overlap("metrics/>", "design/>"), std::nullopt);
  EXPECT_EQ(topic_patterns_overlap("a", "a/>"), std::nullopt);  // ">" needs one more segment
  EXPECT_EQ(topic_patterns_overlap("a/b", "a/b/c"), std::nullopt);
  EXPECT_EQ(topic_patterns_overlap("a/*", "a/b/c"), std::nullopt);
}

TEST(PolicyEdges, ListsSendAndTopicPairsOfTheShippedPolicy) {
  json edges = policy_edges(policy::builtin_default());
  auto has = [&](const std::string& from, const std::string& to, const std::string& kind, const json& topic) {
    return std::any_of(edges.begin(), edges.end(), [&](const json& e) {
      return e.at("from_role") == from && e.at("to_role") == to && e.at("kind") == kind && e.at("topic") == topic;
    });
  };
  EXPECT_TRUE(has("MONITOR", "OPTIMIZER", "send", nullptr));
  EXPECT_FALSE(has("OPTIMIZER", "ARCHITECT", "send", nullptr));
  EXPECT_TRUE(has("DIRECTOR", "DEBUGGER", "send", nullptr));  // send_to = ["*"]
  EXPECT_TRUE(has("MONITOR", "OPTIMIZER", "topic", "metrics/>"));
  EXPECT_TRUE(has("CONSTRUCTOR", "DIRECTOR", "topic", "builds/>"));  // DIRECTOR subscribes to ">"
  EXPECT_FALSE(has("DEBUGGER", "MONITOR", "topic", "debug/>"));
  for (const auto& e : edges) {
    EXPECT_TRUE(e.at("kind") == "send" || e.at("kind") == "topic") << e.dump();
    EXPECT_EQ(e.at("topic").is_null(), e.at("kind") == "send") << e.dump();
  }
}

}  // namespace
}  // namespace agentbus::broker
