// enrolment_attestation_test — attested enrolment against a real broker (issue 11):
// agents whose swtpm carries an EK certificate from a test CA enrol attested; a role
// that requires attestation refuses, with not_attested and no registry row, a TPM
// without an EK certificate, a TPM of an untrusted CA, a software key claiming to be
// a TPM key, a key presenting another key's evidence, and an AK from another TPM than
// the EK's; revoking a TPM's EK refuses every key of that TPM. Receivers check the
// evidence under their own policy and make their own credential: a broker that
// vouches without activation (the permissive test mode) cannot pass off an AK from
// another TPM.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "agentbus/testing/claiming_identity.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"
#include "support/log_capture.hpp"

namespace agentbus {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::broker_process;

class AttestedEnrolment : public testing::broker_test {
 protected:
  void SetUp() override {
    // The CA exists once the first TPM is provisioned: the director's.
    director_id_ = testing::make_identity(dir_.path() / "director-1", "DIRECTOR", false, *pol_, ca());
    auto ev = director_id_.key->attestation_evidence(pol_->suite_for("DIRECTOR")->ecdh_curve);
    ASSERT_TRUE(ev.ok() && ev->has_value());
    director_ek_ = (*ev)->ek;
    std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
    const std::string role = "[roles.DIRECTOR]\n";
    text.replace(text.find(role), role.size(), role + "require_attestation = true\n");
    text += "\n[attestation.ek_ca.test-ca]\nroot = \"" + (ca() / "swtpm-localca-rootca-cert.pem").string() +
            "\"\nintermediates = [\"" + (ca() / "issuercert.pem").string() + "\"]\nsimulator = false\n";
    testing::write_text(dir_.path() / "policy.toml", text);
    broker_process::options o;
    o.policy_file = dir_.path() / "policy.toml";
    o.permissive = vouches_without_activation();
    broker(o);
  }
  // The permissive test mode admits evidence without the credential's activation, as a
  // compromised broker would vouch for it.
  virtual bool vouches_without_activation() const { return false; }
  fs::path ca() const { return dir_.path() / "ca"; }
  // impostor: a DIRECTOR whose keys and AK sit in a TPM of its own (endorsed by the
  // same CA) but whose evidence names the director's TPM's EK: the certificate chain
  // and the AK's certifications all verify, only a credential shows the lie. With
  // `invent`, it answers a credential it cannot open with random bytes.
  testing::test_identity impostor(const std::string& dir, bool invent) {
    using activation = testing::claiming_identity::activation;
    const ec_curve curve = pol_->suite_for("DIRECTOR")->ecdh_curve;
    testing::test_identity own = testing::make_identity(dir_.path() / dir, "DIRECTOR", false, *pol_, ca());
    auto mine = own.key->attestation_evidence(curve);
    EXPECT_TRUE(mine.ok() && mine->has_value());
    tpm::key_evidence forged = **mine;
    forged.ek = director_ek_;
    testing::test_identity out;
    out.tpm_process = std::move(own.tpm_process);
    out.tpm = own.tpm;
    out.key = std::make_shared<testing::claiming_identity>(own.key, own.key->metadata(), forged,
                                                           invent ? activation::invent : activation::forward);
    return out;
  }
  // receiver_policy: the shipped policy requiring DIRECTOR attested, trusting the EK CA
  // in `ca_dir`.
  std::shared_ptr<const policy> receiver_policy(const fs::path& ca_dir, const std::string& file,
                                                bool allow_simulator = true) {
    std::string text = testing::read_text(testing::source_dir() / "config" / "policy.toml");
    const std::string role = "[roles.DIRECTOR]\n";
    text.replace(text.find(role), role.size(),
                 role + "require_attestation = true\n" + (allow_simulator ? "" : "allow_simulator = false\n"));
    text += "\n[attestation.ek_ca.mine]\nroot = \"" + (ca_dir / "swtpm-localca-rootca-cert.pem").string() +
            "\"\nintermediates = [\"" + (ca_dir / "issuercert.pem").string() + "\"]\nsimulator = true\n";
    testing::write_text(dir_.path() / file, text);
    return std::make_shared<policy>(policy::load_file(dir_.path() / file));
  }
  json show(const std::string& name) {
    auto r = broker::admin_client(broker_->admin_endpoint()).request({{"op", "show"}, {"agent", name}});
    return r ? *r : json(nullptr);
  }
  status_code refusal(testing::test_identity id, const std::string& name) {
    try {
      auto a = testing::enrol_identity(*broker_, std::move(id), name, {}, pol_);
      ADD_FAILURE() << name << " enrolled";
      return status_code::ok;
    } catch (const enrolment_error& e) {
      return e.code();
    }
  }

  std::shared_ptr<const policy> pol_ =
      std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
  testing::test_identity director_id_;
  tpm::endorsement director_ek_;  // the director's TPM's EK and its certificate
};

TEST_F(AttestedEnrolment, AnEndorsedTpmEnrolsAttestedAndADeclaredOneStaysDeclared) {
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", {}, pol_);
  json d = show("director-1");
  ASSERT_TRUE(d.is_object()) << d;
  ASSERT_TRUE(d["agent"]["attestation"].is_object()) << d.dump(2);
  EXPECT_EQ(d["agent"]["attestation"]["ek_ca"], "test-ca");
  EXPECT_NE(d["agent"]["attestation"]["ek_issuer"].get<std::string>().find("swtpm-localca"), std::string::npos);
  // swtpm declares itself a simulator; the broker's policy says this CA's TPMs are not:
  // the CA decides, not the agent's word.
  EXPECT_FALSE(d["agent"]["tpm_simulator"].get<bool>()) << "the CA says not a simulator";
  // ECDSA P-384 (ARCHITECT) too: its identity and its static ECDH key on P-384 certified.
  auto architect = testing::enrol_identity(
      *broker_, testing::make_identity(dir_.path() / "architect-1", "ARCHITECT", false, *pol_, ca()), "architect-1", {},
      pol_);
  EXPECT_EQ(show("architect-1")["agent"]["attestation"]["ek_ca"], "test-ca");
  // ECDSA P-256 (OPTIMIZER, a role that does not require it): evidence that holds is
  // recorded as attested all the same.
  auto optimizer = testing::enrol_identity(
      *broker_, testing::make_identity(dir_.path() / "optimizer-1", "OPTIMIZER", false, *pol_, ca()), "optimizer-1", {},
      pol_);
  EXPECT_EQ(show("optimizer-1")["agent"]["attestation"]["ek_ca"], "test-ca");
  // MONITOR does not require attestation; a TPM without an EK certificate enrols declared.
  auto monitor = testing::connect_agent(*broker_, dir_.path(), "monitor-1", "MONITOR");
  EXPECT_TRUE(show("monitor-1")["agent"]["attestation"].is_null());
  testing::inbox m;
  m.attach(*monitor.client);
  ASSERT_TRUE(director->send("monitor-1", "text/plain", as_bytes(std::string_view("attested"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return m.count() == 1; })) << m.describe();
  EXPECT_NE(broker_->log().find("attested by test-ca"), std::string::npos);
}

TEST_F(AttestedEnrolment, WhatCannotProveItsKeysIsNotAttested) {
  // A TPM without an EK certificate.
  EXPECT_EQ(refusal(testing::make_identity(dir_.path() / "d2", "DIRECTOR", false, *pol_), "director-2"),
            status_code::not_attested);
  // A TPM whose EK another CA certified.
  EXPECT_EQ(refusal(testing::make_identity(dir_.path() / "d3", "DIRECTOR", false, *pol_, dir_.path() / "other-ca"),
                    "director-3"),
            status_code::not_attested);
  // A software key claiming a hardware TPM (issue 11's "director-9").
  auto soft = std::shared_ptr<identity_key>(
      identity_key::create_software(dir_.path() / "d9", "DIRECTOR", *pol_->suite_for("DIRECTOR")));
  testing::test_identity liar;
  liar.key = std::make_shared<testing::claiming_identity>(soft, testing::claiming_identity::claim_tpm(*soft));
  EXPECT_EQ(refusal(std::move(liar), "director-9"), status_code::not_attested);
  // ...and presenting the real director's evidence as its own.
  auto real = director_id_.key->attestation_evidence(ec_curve::p384);
  ASSERT_TRUE(real.ok() && real->has_value()) << real.error().to_string();
  testing::test_identity thief;
  thief.key = std::make_shared<testing::claiming_identity>(soft, testing::claiming_identity::claim_tpm(*soft, "IBM"), *real);
  EXPECT_EQ(refusal(std::move(thief), "director-9"), status_code::not_attested);
  for (const char* n : {"director-2", "director-3", "director-9"}) EXPECT_TRUE(show(n).is_null()) << n << " has a row";
  EXPECT_NE(broker_->log().find("identity key: the certified key is not the key of this handshake"), std::string::npos)
      << "the stolen evidence certifies another key";
}

// Receivers check the evidence the broker hands out with a key under their own
// policy (protocol.md §6; the AK–EK binding by their own credential, below).
// A receiver that trusts another EK CA refuses the director the broker admitted
// (not_attested), one whose policy refuses simulators refuses it for its CA's
// simulator flag, and one that trusts the same CA accepts it.
TEST_F(AttestedEnrolment, ReceiversCheckTheEvidenceUnderTheirOwnPolicy) {
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", {}, pol_);
  // Another manufacturer's CA, made by provisioning a TPM under it.
  testing::make_identity(dir_.path() / "elsewhere", "MONITOR", false, *pol_, dir_.path() / "other-ca");
  auto trusting = testing::connect_agent(*broker_, dir_.path(), "monitor-1", "MONITOR", false, {},
                                         receiver_policy(ca(), "same-ca.toml"));
  auto sceptic = testing::connect_agent(*broker_, dir_.path(), "monitor-2", "MONITOR", false, {},
                                        receiver_policy(dir_.path() / "other-ca", "other-ca.toml"));
  testing::inbox t, s;
  t.attach(*trusting.client);
  s.attach(*sceptic.client);
  ASSERT_TRUE(director->send("monitor-1", "text/plain", as_bytes(std::string_view("to the trusting one"))).ok());
  // The sceptic refuses the director's session offer: no session, the send fails.
  EXPECT_FALSE(director->send("monitor-2", "text/plain", as_bytes(std::string_view("to the sceptic"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return t.count() == 1; })) << t.describe();
  EXPECT_TRUE(testing::wait_until([&] { return s.has_rejection(status_code::not_attested, "receiver"); })) << s.describe();
  EXPECT_EQ(s.count(), 0u);
  auto strict = testing::connect_agent(*broker_, dir_.path(), "monitor-3", "MONITOR", false, {},
                                       receiver_policy(ca(), "no-simulators.toml", false));
  testing::inbox n;
  n.attach(*strict.client);
  EXPECT_FALSE(director->send("monitor-3", "text/plain", as_bytes(std::string_view("to the strict one"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return n.has_rejection(status_code::simulator_refused, "receiver"); }))
      << n.describe();
}

// A key the registry knows as attested does not come back without its evidence (a
// way round an EK revocation, or to declare other TPM facts).
TEST_F(AttestedEnrolment, AnAttestedKeyCannotEnrolWithoutItsEvidence) {
  std::shared_ptr<identity_key> real = director_id_.key;
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", {}, pol_);  // keeps its swtpm
  testing::test_identity stripped;
  stripped.key = std::make_shared<testing::claiming_identity>(real, real->metadata());  // same key, no evidence
  const json before = show("director-1")["agent"];
  EXPECT_EQ(refusal(std::move(stripped), "director-1"), status_code::not_attested);
  const json after = show("director-1")["agent"];
  EXPECT_EQ(after["fingerprint"], before["fingerprint"]) << "registry unchanged";
  EXPECT_EQ(after["attestation"], before["attestation"]);
  EXPECT_EQ(after["pending_fingerprint"], before["pending_fingerprint"]);
}

TEST_F(AttestedEnrolment, ARevokedEndorsementKeyRefusesEveryKeyOfItsTpm) {
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", {}, pol_);
  const std::string ek = show("director-1")["agent"]["attestation"]["ek_fingerprint"];
  auto revoked = broker::admin_client(broker_->admin_endpoint())
                     .signed_request({{"op", "revoke_key"}, {"fingerprint", ek}, {"reason", "TPM stolen"}},
                                     broker_->operator_key(), broker_process::kOperatorName);
  ASSERT_TRUE(revoked.ok()) << revoked.error().to_string();
  EXPECT_EQ((*revoked)["revoked_agents"], json::array({"director-1"})) << "the agents on that TPM are revoked with it";
  // Another key on the same TPM, under a new name, with a valid token.
  auto same_tpm = identity_key::create_tpm(dir_.path() / "second", "DIRECTOR", *pol_->suite_for("DIRECTOR"),
                                           director.id.tpm);
  ASSERT_TRUE(same_tpm.ok()) << same_tpm.error().to_string();
  testing::test_identity second;
  second.key = std::move(same_tpm).value();
  EXPECT_EQ(refusal(std::move(second), "director-2"), status_code::revoked_key);
  EXPECT_TRUE(show("director-2").is_null()) << "no row for a refused enrolment";
}

// An AK from another TPM than the EK's: the certificate and the certifications verify,
// but the TPM cannot open the broker's credential. One that sends random bytes for it
// is refused at PROOF (not_attested), and nothing is recorded.
TEST_F(AttestedEnrolment, AnAkFromAnotherTpmIsRefusedAtProof) {
  EXPECT_EQ(refusal(impostor("impostor", /*invent=*/true), "director-7"), status_code::not_attested);
  EXPECT_TRUE(show("director-7").is_null()) << "no row for a refused enrolment";
  EXPECT_NE(broker_->log().find("the credential was not activated"), std::string::npos) << "refused at PROOF";
}

class VouchingBroker : public AttestedEnrolment {
 protected:
  bool vouches_without_activation() const override { return true; }
};

// The broker vouches for an impostor's evidence without activation (a compromised
// broker). A receiver that requires the role attested makes its own credential for
// the peer's AK in its session set-up (protocol.md §4.3): the honest director's TPM
// opens it and traffic flows both ways; the impostor's cannot: it gets no session
// (not_attested at its end), and one that goes on with an invented secret has its
// envelopes refused not_attested at the receiver, whichever side offered.
TEST_F(VouchingBroker, ReceiversMakeTheirOwnCredentialAndCatchAnAkFromAnotherTpm) {
  agent_options quick;
  quick.session_timeout = std::chrono::milliseconds(1500);
  auto liar = testing::enrol_identity(*broker_, impostor("liar", false), "director-7", quick, pol_);
  auto inventor = testing::enrol_identity(*broker_, impostor("inventor", true), "director-8", quick, pol_);
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", {}, pol_);
  EXPECT_TRUE(show("director-7")["agent"]["attestation"].is_object()) << "the broker vouched for it";
  auto monitor = testing::connect_agent(*broker_, dir_.path(), "monitor-1", "MONITOR", false, quick,
                                        receiver_policy(ca(), "receiver.toml"));
  testing::inbox m, d, l;
  m.attach(*monitor.client);
  d.attach(*director.client);
  l.attach(*liar.client);

  testing::log_capture log;
  ASSERT_TRUE(director->send("monitor-1", "text/plain", as_bytes(std::string_view("attested"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return m.count() == 1; })) << m.describe();
  ASSERT_TRUE(monitor->send("director-1", "text/plain", as_bytes(std::string_view("back"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return d.count() == 1; })) << d.describe();
  EXPECT_EQ(log.lines_with("[monitor-1] director-1's TPM recovered our credential"), 1u)
      << "the monitor's credential went to the director once, and came back";

  status st = liar->send("monitor-1", "text/plain", as_bytes(std::string_view("from another TPM")));
  EXPECT_EQ(st.code(), status_code::no_session) << st.to_string();
  EXPECT_TRUE(testing::wait_until([&] { return l.has_rejection(status_code::not_attested, "sender"); })) << l.describe();

  ASSERT_TRUE(inventor->send("monitor-1", "text/plain", as_bytes(std::string_view("invented"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return m.rejections_of(status_code::not_attested, "receiver") == 1; }))
      << m.describe();
  // The monitor offers this time: another inventor answers, and what it sends under
  // that session is refused too.
  auto answerer = testing::enrol_identity(*broker_, impostor("answerer", true), "director-9", quick, pol_);
  ASSERT_TRUE(monitor->send("director-9", "text/plain", as_bytes(std::string_view("to the inventor"))).ok());
  ASSERT_TRUE(answerer->send("monitor-1", "text/plain", as_bytes(std::string_view("invented again"))).ok());
  EXPECT_TRUE(testing::wait_until([&] { return m.rejections_of(status_code::not_attested, "receiver") == 2; }))
      << m.describe();
  EXPECT_EQ(m.count(), 1u) << "only the attested director's envelope was delivered";
}

// A token bound to a TPM (token create --ek): only a key that TPM attests may use it.
// Another endorsed TPM's key is refused not_authorised, with no row, and the token
// stays usable for the right one.
TEST_F(AttestedEnrolment, ATokenBoundToATpmAdmitsOnlyAKeyItAttests) {
  auto ek = tpm::endorsement_fingerprint(director_ek_);
  ASSERT_TRUE(ek.ok()) << ek.error().to_string();
  auto token = broker::admin_client(broker_->admin_endpoint())
                   .issue_token(broker_->operator_key(), broker_process::kOperatorName, "director-1", "DIRECTOR", {},
                                600, *ek);
  ASSERT_TRUE(token.ok()) << token.error().to_string();
  agent_options with_token;
  with_token.enrolment_token = *token;
  try {
    testing::enrol_identity(*broker_, testing::make_identity(dir_.path() / "other-tpm", "DIRECTOR", false, *pol_, ca()),
                            "director-1", with_token, pol_);
    ADD_FAILURE() << "a key of another TPM enrolled with a token bound to the director's TPM";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::not_authorised) << e.what();
  }
  EXPECT_TRUE(show("director-1").is_null()) << "no row for a refused enrolment";
  EXPECT_NE(broker_->log().find("is for a key attested by another TPM"), std::string::npos);
  auto director = testing::enrol_identity(*broker_, std::move(director_id_), "director-1", with_token, pol_);
  EXPECT_EQ(show("director-1")["agent"]["attestation"]["ek_fingerprint"], *ek);
}

// A recorded activation does not serve twice: each CHALLENGE carries a fresh secret, so
// an identity that answers a later credential with the first one's secret is refused
// at PROOF (not_attested), and the pinned record is unchanged.
TEST_F(AttestedEnrolment, ARecordedActivationIsRefusedAtTheNextEnrolment) {
  std::shared_ptr<identity_key> real = director_id_.key;
  const ec_curve curve = pol_->suite_for("DIRECTOR")->ecdh_curve;
  auto evidence = real->attestation_evidence(curve);
  ASSERT_TRUE(evidence.ok() && evidence->has_value());
  auto replaying = std::make_shared<testing::claiming_identity>(real, real->metadata(), **evidence,
                                                                testing::claiming_identity::activation::replay_first);
  testing::test_identity first;
  first.tpm_process = std::move(director_id_.tpm_process);
  first.tpm = director_id_.tpm;
  first.key = replaying;
  // Enrols (the identity records its activation); it keeps the swtpm running.
  auto director = testing::enrol_identity(*broker_, std::move(first), "director-1", {}, pol_);
  const json before = show("director-1")["agent"];
  agent_options o;
  o.name = "director-1";
  o.broker_endpoint = broker_->endpoint();
  o.broker_fingerprint = broker_->fingerprint();
  try {
    agent again(o, replaying, pol_);
    ADD_FAILURE() << "a replayed activation enrolled";
  } catch (const enrolment_error& e) {
    EXPECT_EQ(e.code(), status_code::not_attested) << e.what();
  }
  EXPECT_NE(broker_->log().find("the credential was not activated"), std::string::npos);
  EXPECT_EQ(show("director-1")["agent"]["fingerprint"], before["fingerprint"]) << "registry unchanged";
}

}  // namespace
}  // namespace agentbus
