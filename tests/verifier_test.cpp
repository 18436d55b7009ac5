// verifier_test.cpp — the enforcement order, written once for the broker and the
// receiver (session/verifier.hpp), with hooks standing in for either end: which
// check wins when several fail, what waits, what commits the replay window, and a
// wire batch decided as a unit. Real signatures (a software P-256 key) and MACs.
#include <gtest/gtest.h>

#include "crypto/software_key.hpp"
#include "session/checks.hpp"
#include "session/replay_window.hpp"
#include "session/verifier.hpp"

namespace agentbus::session {
namespace {

mac_key hop_key() { return mac_key{bytes(kSessionIdSize, 7), secret_bytes(bytes(32, 7)), hash_algorithm::sha256}; }

// The sender's end: a MONITOR with a software P-256 key (claimed as TPM-held: the
// hooks vouch for the key's protection, as the broker's registry or a receiver's
// directory would).
struct test_sender {
  crypto::software_private_key key = crypto::software_private_key::generate({signature_scheme::ecdsa, 0, ec_curve::p256});
  suite role_suite = *policy::builtin_default().suite_for("MONITOR");
  bytes key_id = key.public_part().fingerprint();
  std::uint64_t sequence = 1000;

  struct built {
    envelope_header header;
    envelope_auth auth;
    bytes signed_part, auth_part, digest;
  };
  built make(std::function<void(envelope_header&)> edit_header = {}, std::function<void(envelope_auth&)> edit_auth = {},
             bool with_hop_mac = true, std::optional<hash_algorithm> digest_hash = std::nullopt) {
    built e;
    e.header.message_id = bytes(kMessageIdSize, static_cast<std::uint8_t>(sequence));
    e.header.sender = "monitor-1";
    e.header.to = "director-1";
    e.header.sequence = sequence++;
    e.header.timestamp_ms = now_ms();
    e.header.suite = role_suite.name;
    e.header.payload = bytes{1, 2, 3};
    if (edit_header) edit_header(e.header);
    e.signed_part = encode_signed_part(e.header);
    e.digest = envelope_digest(digest_hash.value_or(role_suite.envelope_hash), e.signed_part);
    e.auth.level = assurance::tpm;
    e.auth.key_id = key_id;
    e.auth.signature = key.sign_digest(digest_hash.value_or(role_suite.envelope_hash), e.digest).value();
    if (edit_auth) edit_auth(e.auth);
    if (with_hop_mac) {
      const mac_key k = hop_key();
      e.auth.hop_mac = session_mac{"", k.session_id, hop_tag(k, e.digest, e.auth)};
    }
    e.auth_part = encode_auth_part(e.auth);
    return e;
  }
};

// hooks playing either end: the sender is known (or not yet), the ACL and the
// end-to-end step answer as told; each hook call is recorded in order.
struct fake_hooks final : enforcement_hooks {
  const test_sender& s;
  verdict sender_answer = verdict::accept;
  status acl_answer;
  verdict e2e_answer = verdict::accept;
  std::vector<std::string> calls;
  explicit fake_hooks(const test_sender& who) : s(who) {}

  verdict sender(const envelope_header& h, sender_facts& out, status& why) override {
    calls.push_back("sender");
    if (sender_answer == verdict::refuse) why = {status_code::spoofed_sender, "not this connection's agent"};
    if (sender_answer != verdict::accept) return sender_answer;
    key = s.key.public_part();
    out = {h.sender, "MONITOR", &s.role_suite, &*key, s.key_id, protection::tpm};
    return verdict::accept;
  }
  status acl(const envelope_header&, const sender_facts&) override {
    calls.push_back("acl");
    return acl_answer;
  }
  verdict end_to_end(const opened_envelope&, const sender_facts&, status& why) override {
    calls.push_back("e2e");
    if (e2e_answer == verdict::refuse) why = {status_code::bad_mac, "end-to-end MAC does not verify"};
    return e2e_answer;
  }
  std::optional<crypto::public_key> key;
};

struct verifying_end {
  policy pol = policy::builtin_default();
  root_cache roots{64};
  verifier v{pol, verifier_options{30'000, false}, &roots};
  session_state hop;
  replay_window window;
  verifying_end() { hop.install(hop_key(), hop_key(), std::chrono::seconds(30)); }

  // verify runs steps 1-10 as the broker's publish intake does.
  verdict verify(const test_sender::built& e, fake_hooks& hooks, status& why) {
    opened_envelope o;
    sender_facts facts;
    verdict r = v.open(e.signed_part, e.auth_part, state_hop(hop), hooks, o, facts, why);
    if (r != verdict::accept) return r;
    return v.check(o, facts, window, hooks, why);
  }
};

TEST(Verifier, AGoodEnvelopePassesEveryStepOnceAndCommitsTheWindow) {
  test_sender s;
  verifying_end end;
  fake_hooks hooks(s);
  status why;
  auto e = s.make();
  EXPECT_EQ(end.verify(e, hooks, why), verdict::accept) << why.to_string();
  EXPECT_EQ(hooks.calls, (std::vector<std::string>{"sender", "acl", "e2e"}));
  EXPECT_EQ(end.verify(e, hooks, why), verdict::refuse);
  EXPECT_EQ(why.code(), status_code::replayed) << "committed after the first";
}

TEST(Verifier, TheDeclaredSuiteIsCheckedBeforeTheHopMacAndTheDigestIsTheRoles) {
  test_sender s;
  verifying_end end;
  fake_hooks hooks(s);
  status why;
  // Hashed under the suite it declares: before the change, the verifier computed the
  // role's digest first and the hop MAC failed (bad_mac), hiding the real reason.
  auto e = s.make([](envelope_header& h) { h.suite = "ecdsa-p384-sha3-384"; }, {}, true, hash_algorithm::sha3_384);
  EXPECT_EQ(end.verify(e, hooks, why), verdict::refuse);
  EXPECT_EQ(why.code(), status_code::suite_mismatch) << why.to_string();
  // Declaring the right suite and hashing otherwise: the digest is the role's, the MAC fails.
  auto f = s.make({}, {}, true, hash_algorithm::sha3_256);
  EXPECT_EQ(end.verify(f, hooks, why), verdict::refuse);
  EXPECT_EQ(why.code(), status_code::bad_mac);
}

TEST(Verifier, CheaperChecksWinWhenSeveralFail) {
  test_sender s;
  verifying_end end;
  status why;
  {  // a wrong key id (step 5) and an ACL refusal (step 6): wrong_key
    fake_hooks hooks(s);
    hooks.acl_answer = {status_code::acl_denied, "no"};
    EXPECT_EQ(end.verify(s.make({}, [](envelope_auth& a) { a.key_id[0] ^= 1; }), hooks, why), verdict::refuse);
    EXPECT_EQ(why.code(), status_code::wrong_key);
  }
  {  // the ACL (6) before the replay window (7)
    fake_hooks hooks(s);
    auto e = s.make();
    ASSERT_EQ(end.verify(e, hooks, why), verdict::accept);
    hooks.acl_answer = {status_code::acl_denied, "no"};
    EXPECT_EQ(end.verify(e, hooks, why), verdict::refuse);
    EXPECT_EQ(why.code(), status_code::acl_denied);
  }
  {  // a stale timestamp (7) before a bad signature (8)
    fake_hooks hooks(s);
    auto e = s.make([](envelope_header& h) { h.timestamp_ms -= 3'600'000; }, [](envelope_auth& a) { a.signature[8] ^= 1; });
    EXPECT_EQ(end.verify(e, hooks, why), verdict::refuse);
    EXPECT_EQ(why.code(), status_code::stale);
  }
  {  // the signature (8) before the end-to-end MAC (9), which is not even asked
    fake_hooks hooks(s);
    hooks.e2e_answer = verdict::refuse;
    EXPECT_EQ(end.verify(s.make({}, [](envelope_auth& a) { a.signature[8] ^= 1; }), hooks, why), verdict::refuse);
    EXPECT_EQ(why.code(), status_code::bad_signature);
    EXPECT_EQ(std::count(hooks.calls.begin(), hooks.calls.end(), "e2e"), 0);
  }
}

TEST(Verifier, NothingThatFailsOrWaitsCommitsTheReplayWindow) {
  test_sender s;
  verifying_end end;
  status why;
  auto e = s.make();
  fake_hooks waiting(s);
  waiting.e2e_answer = verdict::wait;  // the session key is being installed
  EXPECT_EQ(end.verify(e, waiting, why), verdict::wait);
  fake_hooks failing(s);
  failing.e2e_answer = verdict::refuse;
  EXPECT_EQ(end.verify(e, failing, why), verdict::refuse);
  fake_hooks fine(s);
  EXPECT_EQ(end.verify(e, fine, why), verdict::accept) << "the same envelope, checked again once it can be decided";
}

TEST(Verifier, AnUnknownSenderWaitsARefusedOneIsRefusedBeforeAnyCryptography) {
  test_sender s;
  verifying_end end;
  status why;
  fake_hooks unknown(s);
  unknown.sender_answer = verdict::wait;
  EXPECT_EQ(end.verify(s.make({}, {}, false), unknown, why), verdict::wait) << "no hop MAC, but the key is not known yet";
  fake_hooks spoofed(s);
  spoofed.sender_answer = verdict::refuse;
  EXPECT_EQ(end.verify(s.make(), spoofed, why), verdict::refuse);
  EXPECT_EQ(why.code(), status_code::spoofed_sender);
}

TEST(Verifier, HopOnlyModeChecksTheHopMacAndNothingElse) {
  test_sender s;
  verifying_end end;
  verifier permissive(end.pol, verifier_options{30'000, true}, nullptr);
  fake_hooks hooks(s);
  status why;
  auto e = s.make([](envelope_header& h) { h.suite = "ecdsa-p384-sha3-384"; }, [](envelope_auth& a) { a.signature[8] ^= 1; });
  opened_envelope o;
  sender_facts facts;
  ASSERT_EQ(permissive.open(e.signed_part, e.auth_part, state_hop(end.hop), hooks, o, facts, why), verdict::accept);
  EXPECT_EQ(permissive.check(o, facts, end.window, hooks, why), verdict::accept);
  auto g = s.make({}, {}, false);
  EXPECT_EQ(permissive.open(g.signed_part, g.auth_part, state_hop(end.hop), hooks, o, facts, why), verdict::refuse);
  EXPECT_EQ(why.code(), status_code::bad_mac);
}

// ---------------------------------------------------------------- wire batches

std::vector<bytes> wire_batch(std::vector<test_sender::built> members, const std::function<void(std::vector<bytes>&)>& edit = {}) {
  std::vector<wire_batch_item> items;
  for (auto& m : members) {
    m.auth.hop_mac.reset();
    m.auth_part = encode_auth_part(m.auth);
  }
  for (const auto& m : members) items.push_back({m.digest, &m.auth});
  const mac_key k = hop_key();
  std::vector<bytes> f{k.session_id, wire_batch_tag(k, items)};
  for (const auto& m : members) {
    f.push_back(m.signed_part);
    f.push_back(m.auth_part);
  }
  if (edit) edit(f);
  return f;
}

TEST(Verifier, AWireBatchIsDecidedAsAUnitThenEachEnvelopeOnItsOwn) {
  test_sender s;
  verifying_end end;
  fake_hooks hooks(s);
  status why;
  std::vector<opened_envelope> out;
  sender_facts facts;
  auto good = wire_batch({s.make(), s.make(), s.make()});
  ASSERT_EQ(end.v.open_batch(good, 1 << 20, state_hop(end.hop), hooks, out, facts, why), verdict::accept) << why.to_string();
  ASSERT_EQ(out.size(), 3u);
  for (const auto& o : out) EXPECT_EQ(end.v.check(o, facts, end.window, hooks, why), verdict::accept) << why.to_string();

  auto refused = [&](std::vector<bytes> frames) {
    out.clear();
    verdict v = end.v.open_batch(frames, 1 << 20, state_hop(end.hop), hooks, out, facts, why);
    EXPECT_TRUE(out.empty());
    return v == verdict::refuse ? why.code() : status_code::ok;
  };
  EXPECT_EQ(refused(wire_batch({s.make(), s.make([](envelope_header& h) { h.sender = "director-1"; })})),
            status_code::malformed) << "one sender per batch";
  EXPECT_EQ(refused(wire_batch({s.make(), s.make([](envelope_header& h) { h.suite = "ecdsa-p384-sha3-384"; })})),
            status_code::suite_mismatch);
  auto with_own_mac = wire_batch({s.make(), s.make()});
  {
    auto member = s.make();
    with_own_mac.push_back(member.signed_part);
    with_own_mac.push_back(member.auth_part);  // still carries its hop MAC
  }
  EXPECT_EQ(refused(with_own_mac), status_code::malformed);
  EXPECT_EQ(refused(wire_batch({s.make(), s.make()}, [](std::vector<bytes>& f) { f[1][0] ^= 1; })), status_code::bad_mac);
  EXPECT_EQ(refused(wire_batch({s.make(), s.make()}, [](std::vector<bytes>& f) { f.pop_back(); })), status_code::malformed);
  fake_hooks unknown(s);
  unknown.sender_answer = verdict::wait;
  EXPECT_EQ(end.v.open_batch(good, 1 << 20, state_hop(end.hop), unknown, out, facts, why), verdict::wait);
  EXPECT_TRUE(out.empty());
}

TEST(Verifier, ARefusedBatchNamesEachOfItsEnvelopes) {
  test_sender s;
  auto a = s.make(), b2 = s.make();
  auto frames = wire_batch({a, b2});
  frames.push_back(bytes{0x01, 0x02});  // a lone frame that is no signed part
  std::vector<bytes> ids;
  int anonymous = 0;
  for_each_member(frames, [&](const std::optional<envelope_header>& h) {
    if (h) ids.push_back(h->message_id);
    else ++anonymous;
  });
  EXPECT_EQ(ids, (std::vector<bytes>{a.header.message_id, b2.header.message_id}));
  EXPECT_EQ(anonymous, 1);
}

}  // namespace
}  // namespace agentbus::session
