// session_test.cpp — the stateful pieces of a session, without sockets: the replay
// window and control sequences, the timestamp check, session keys (install, grace,
// rekey due), the key schedule and the one key agreement both ends run.
#include <gtest/gtest.h>

#include <array>
#include <set>
#include <thread>

#include "agentbus/crypto.hpp"
#include "session/handshake.hpp"
#include "session/key_agreement.hpp"
#include "session/replay_window.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {
namespace {

bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }
// Handshake messages that outlive the views a transcript takes of them.
const bytes kOffer = b("offer"), kAccept = b("accept"), kHello = b("hello"), kChallenge = b("challenge"),
            kProof = b("proof"), kT = b("t");

// ---------------------------------------------------------------- replay window

TEST(ReplayWindow, AcceptsEachSequenceOnceAndReorderingWithinTheWidth) {
  replay_window w;
  EXPECT_TRUE(w.check(1000).ok());
  w.commit(1000);
  EXPECT_EQ(w.check(1000).code(), status_code::replayed);
  EXPECT_TRUE(w.check(1001).ok());
  EXPECT_TRUE(w.check(999).ok()) << "late but inside the window, never seen";
  w.commit(999);
  EXPECT_EQ(w.check(999).code(), status_code::replayed);
  w.commit(1000 + replay_window::kWidth);
  EXPECT_EQ(w.check(1000).code(), status_code::replayed) << "fell out of the window: refused, never accepted twice";
  EXPECT_TRUE(w.check(1001).ok()) << "inside the window and unseen";
  EXPECT_EQ(w.highest(), 1000 + replay_window::kWidth);
}

TEST(ReplayWindow, CheckHasNoSideEffectOnlyCommitAdvances) {
  replay_window w;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(w.check(5).ok());  // a forged envelope checked, never committed
  w.commit(7);
  EXPECT_TRUE(w.check(5).ok());
  EXPECT_TRUE(w.check(6).ok());
  EXPECT_EQ(w.check(7).code(), status_code::replayed);
}

TEST(ControlSequence, StrictlyIncreasingPerSessionForTheLastFourSessions) {
  control_sequence c;
  const bytes s1(16, 1), s2(16, 2);
  EXPECT_TRUE(c.accept(s1, 1));
  EXPECT_FALSE(c.accept(s1, 1));
  EXPECT_TRUE(c.accept(s2, 1)) << "another session (a rekey's grace window) counts on its own";
  EXPECT_TRUE(c.accept(s1, 5));
  EXPECT_FALSE(c.accept(s1, 4));
  for (std::uint8_t s = 3; s < 3 + control_sequence::kSessions; ++s) EXPECT_TRUE(c.accept(bytes(16, s), 1));
  EXPECT_TRUE(c.accept(s1, 1)) << "forgotten beyond kSessions: a session that old has no live key either";
}

TEST(Timestamp, WithinTheSkewEitherWayElseStale) {
  EXPECT_TRUE(check_timestamp(10'000, 10'000, 500).ok());
  EXPECT_TRUE(check_timestamp(9'500, 10'000, 500).ok());
  EXPECT_TRUE(check_timestamp(10'500, 10'000, 500).ok());
  EXPECT_EQ(check_timestamp(9'499, 10'000, 500).code(), status_code::stale);
  EXPECT_EQ(check_timestamp(10'501, 10'000, 500).code(), status_code::stale) << "a clock running ahead";
  EXPECT_EQ(check_timestamp(0, ~0ull, 500).code(), status_code::stale) << "no overflow at the edges";
}

// ---------------------------------------------------------------- session keys

mac_key key(std::uint8_t id) { return mac_key{bytes(kSessionIdSize, id), secret_bytes(bytes(32, id)), hash_algorithm::sha256}; }

TEST(SessionState, ASupersededReceiveKeyWorksForTheGraceWindowThenExpires) {
  session_state s;
  EXPECT_EQ(s.send_key(), nullptr);
  s.install(key(1), key(1), std::chrono::seconds(0));
  ASSERT_NE(s.find_receive(bytes(kSessionIdSize, 1)), nullptr);
  s.install(key(2), key(2), std::chrono::seconds(30));
  EXPECT_EQ(s.send_key()->session_id, bytes(kSessionIdSize, 2)) << "the new key sends at once";
  EXPECT_NE(s.find_receive(bytes(kSessionIdSize, 1)), nullptr) << "the old one still receives";
  EXPECT_NE(s.find_receive(bytes(kSessionIdSize, 2)), nullptr);
  session_state t;
  t.install(key(1), key(1), std::chrono::seconds(0));
  t.install(key(2), key(2), std::chrono::seconds(0));  // no grace
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(t.find_receive(bytes(kSessionIdSize, 1)), nullptr);
  EXPECT_EQ(t.find_receive(bytes(kSessionIdSize, 9)), nullptr);
  EXPECT_EQ(t.epoch(), 2u);
}

TEST(SessionState, DueForRekeyByMessagesOrAgeAndCountsRestartAtInstall) {
  session_state s;
  EXPECT_FALSE(s.due_for_rekey(1, std::chrono::seconds(0))) << "nothing installed";
  s.install(key(1), key(1), std::chrono::seconds(1));
  EXPECT_FALSE(s.due_for_rekey(3, std::chrono::seconds(3600)));
  for (int i = 0; i < 3; ++i) s.count_sent();
  EXPECT_TRUE(s.due_for_rekey(3, std::chrono::seconds(3600)));
  s.install(key(2), key(2), std::chrono::seconds(1));
  EXPECT_EQ(s.sent(), 0u);
  EXPECT_FALSE(s.due_for_rekey(3, std::chrono::seconds(3600)));
  EXPECT_TRUE(s.due_for_rekey(3, std::chrono::seconds(0))) << "by age";
}

TEST(SessionState, PreparedKeysTagLikeTheOneShotHmac) {
  session_state s;
  s.install(key(7), key(7), std::chrono::seconds(1));
  const bytes data = b("hop MAC input");
  EXPECT_EQ(s.send_key()->tag(data), crypto::hmac(hash_algorithm::sha256, bytes(32, 7), data));
}

// ---------------------------------------------------------------- key schedule

std::vector<secret_bytes> shares(std::uint8_t seed) {
  std::vector<secret_bytes> z;
  z.emplace_back(bytes(32, seed));
  return z;
}

TEST(KeySchedule, DirectionsSessionIdsAndEveryInputMatter) {
  const bytes ni(kNonceSize, 1), nr(kNonceSize, 2), th(32, 3);
  auto base = derive_keys(shares(9), ni, nr, "hop", "agent-1", "broker", th, hash_algorithm::sha256, hash_algorithm::sha384);
  EXPECT_EQ(base.session_id.size(), kSessionIdSize);
  EXPECT_EQ(base.initiator_to_responder.size(), 32u) << "each direction as long as its MAC hash";
  EXPECT_EQ(base.responder_to_initiator.size(), 48u);
  EXPECT_NE(bytes(base.initiator_to_responder.view().begin(), base.initiator_to_responder.view().end()),
            bytes(base.responder_to_initiator.view().begin(), base.responder_to_initiator.view().begin() + 32));
  std::set<bytes> ids{base.session_id};
  ids.insert(derive_keys(shares(8), ni, nr, "hop", "agent-1", "broker", th, hash_algorithm::sha256, hash_algorithm::sha384).session_id);
  ids.insert(derive_keys(shares(9), nr, ni, "hop", "agent-1", "broker", th, hash_algorithm::sha256, hash_algorithm::sha384).session_id);
  ids.insert(derive_keys(shares(9), ni, nr, "e2e", "agent-1", "broker", th, hash_algorithm::sha256, hash_algorithm::sha384).session_id);
  ids.insert(derive_keys(shares(9), ni, nr, "hop", "agent-2", "broker", th, hash_algorithm::sha256, hash_algorithm::sha384).session_id);
  ids.insert(derive_keys(shares(9), ni, nr, "hop", "agent-1", "broker", bytes(32, 4), hash_algorithm::sha256, hash_algorithm::sha384).session_id);
  EXPECT_EQ(ids.size(), 6u) << "secrets, nonces, label, names and transcript each change the keys";
}

TEST(KeySchedule, TheTranscriptHashIsTheStrongerMacHashInitiatorOnATie) {
  const std::array<byte_view, 2> parts{kOffer, kAccept};
  EXPECT_EQ(transcript_hash(hash_algorithm::sha256, hash_algorithm::sha384, parts).size(), 48u);
  EXPECT_EQ(transcript_hash(hash_algorithm::sha384, hash_algorithm::sha256, parts).size(), 48u);
  EXPECT_EQ(transcript_hash(hash_algorithm::sha3_256, hash_algorithm::sha256, parts),
            crypto::digest(hash_algorithm::sha3_256, b("offeraccept")));
}

// ---------------------------------------------------------------- key agreement

// Both ends of a handshake, each with a static key or not: they derive the same keys,
// oriented, and a missing static share on either side changes them.
struct side {
  crypto::ec_keypair eph = crypto::ec_keypair::generate(ec_curve::p256);
  std::optional<crypto::ec_keypair> stat;
  std::optional<crypto::public_key> stat_pub() const {
    return stat ? std::optional<crypto::public_key>(stat->public_part()) : std::nullopt;
  }
};

agreed_keys run(handshake_role me, const side& mine, const side& peer, std::span<const byte_view> transcript) {
  auto s = software_shares(mine.eph, peer.eph.public_part(), peer.stat_pub());
  EXPECT_TRUE(s.ok());
  if (mine.stat) s->my_static = mine.stat->derive(peer.eph.public_part()).value();  // what TPM2_ECDH_ZGen computes
  const bytes ni(kNonceSize, 1), nr(kNonceSize, 2);
  return agree(me, *s, {"e2e", "i-1", "r-1", ni, nr, hash_algorithm::sha256, hash_algorithm::sha384, transcript});
}

TEST(KeyAgreement, BothEndsAgreeWhateverStaticKeysTheyHold) {
  const std::array<byte_view, 2> transcript{kOffer, kAccept};
  for (int mask = 0; mask < 4; ++mask) {
    SCOPED_TRACE(mask);
    side i, r;
    if (mask & 1) i.stat = crypto::ec_keypair::generate(ec_curve::p256);
    if (mask & 2) r.stat = crypto::ec_keypair::generate(ec_curve::p256);
    agreed_keys ki = run(handshake_role::initiator, i, r, transcript);
    agreed_keys kr = run(handshake_role::responder, r, i, transcript);
    EXPECT_EQ(ki.session_id, kr.session_id);
    EXPECT_EQ(ki.send.hash, hash_algorithm::sha256) << "the initiator sends with its own MAC hash";
    EXPECT_EQ(kr.send.hash, hash_algorithm::sha384);
    const bytes data = b("payload MAC input");
    EXPECT_TRUE(crypto::constant_time_equal(crypto::hmac(ki.send.hash, ki.send.key.view(), data),
                                            crypto::hmac(kr.receive.hash, kr.receive.key.view(), data)));
    EXPECT_TRUE(crypto::constant_time_equal(crypto::hmac(kr.send.hash, kr.send.key.view(), data),
                                            crypto::hmac(ki.receive.hash, ki.receive.key.view(), data)));
  }
}

TEST(KeyAgreement, AStaticShareOnlyOneSideMixesInGivesOtherKeys) {
  const std::array<byte_view, 1> transcript{kT};
  side i, r;
  r.stat = crypto::ec_keypair::generate(ec_curve::p256);
  agreed_keys ki = run(handshake_role::initiator, i, r, transcript);
  side forgetful = r;  // the responder "forgets" its TPM share
  forgetful.stat.reset();
  agreed_keys kr = run(handshake_role::responder, forgetful, i, transcript);
  EXPECT_NE(ki.session_id, kr.session_id);
}

TEST(KeyAgreement, WelcomeConfirmationBindsTheKeysAndTheSessionId) {
  const std::array<byte_view, 3> transcript{kHello, kChallenge, kProof};
  side agent, broker;
  agreed_keys ka = run(handshake_role::initiator, agent, broker, transcript);
  agreed_keys kb = run(handshake_role::responder, broker, agent, transcript);
  welcome_msg w;
  w.session_id = kb.session_id;
  w.rekey_after_messages = 1000;
  w.rekey_after_seconds = 60;
  w.confirm_tag = welcome_confirm_tag(kb, w.rekey_after_messages, w.rekey_after_seconds);
  EXPECT_TRUE(check_welcome_confirm(ka, w).ok());
  welcome_msg bad = w;
  bad.confirm_tag[0] ^= 1;
  EXPECT_EQ(check_welcome_confirm(ka, bad).code(), status_code::bad_mac);
  bad = w;
  bad.session_id = bytes(kSessionIdSize, 0);
  EXPECT_EQ(check_welcome_confirm(ka, bad).code(), status_code::bad_mac);
  // D11: the rekey schedule is covered (an on-path attacker cannot disable rekeying).
  bad = w;
  bad.rekey_after_messages = 0;
  EXPECT_EQ(check_welcome_confirm(ka, bad).code(), status_code::bad_mac);
  bad = w;
  bad.rekey_after_seconds = 0;
  EXPECT_EQ(check_welcome_confirm(ka, bad).code(), status_code::bad_mac);
}

// The credential secrets (protocol.md §4.3) enter the keys after the ECDH shares: both
// ends agree when both mix the same secrets; a peer whose TPM did not recover one
// (another secret, or none) ends up with other keys and another session id.
agreed_keys run_with(handshake_role me, const side& mine, const side& peer, const std::optional<bytes>& a_r,
                     const std::optional<bytes>& a_i) {
  auto s = software_shares(mine.eph, peer.eph.public_part(), std::nullopt);
  EXPECT_TRUE(s.ok());
  if (a_r) s->offer_credential = secret_bytes(byte_view(*a_r));
  if (a_i) s->accept_credential = secret_bytes(byte_view(*a_i));
  const std::array<byte_view, 2> transcript{kOffer, kAccept};
  const bytes ni(kNonceSize, 1), nr(kNonceSize, 2);
  return agree(me, *s, {"e2e", "i-1", "r-1", ni, nr, hash_algorithm::sha256, hash_algorithm::sha384, transcript});
}

TEST(KeyAgreement, CredentialSecretsEnterTheKeys) {
  side i, r;
  const bytes a_r(32, 0x5a), a_i(32, 0xa5), invented(32, 0x11);
  const agreed_keys ki = run_with(handshake_role::initiator, i, r, a_r, a_i);
  const agreed_keys kr = run_with(handshake_role::responder, r, i, a_r, a_i);
  EXPECT_EQ(ki.session_id, kr.session_id);
  const bytes data = b("payload MAC input");
  EXPECT_TRUE(crypto::constant_time_equal(crypto::hmac(ki.send.hash, ki.send.key.view(), data),
                                          crypto::hmac(kr.receive.hash, kr.receive.key.view(), data)));
  EXPECT_NE(run_with(handshake_role::initiator, i, r, std::nullopt, std::nullopt).session_id, ki.session_id);
  EXPECT_NE(run_with(handshake_role::initiator, i, r, a_r, std::nullopt).session_id, ki.session_id);
  EXPECT_NE(run_with(handshake_role::initiator, i, r, a_r, invented).session_id, ki.session_id)
      << "an invented secret gives other keys";
  EXPECT_NE(run_with(handshake_role::initiator, i, r, a_i, a_r).session_id, ki.session_id) << "the order is fixed";
}

}  // namespace
}  // namespace agentbus::session
