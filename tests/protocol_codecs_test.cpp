// protocol_codecs_test.cpp — the handshake bodies and the typed control messages
// (schemas/protocol.md §3, §5): every message round-trips, and every shape an
// operation does not have is refused with a typed code.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>

#include "agentbus/envelope.hpp"
#include "session/control.hpp"
#include "session/handshake.hpp"
#include "session/session_keys.hpp"

namespace agentbus::session {
namespace {

bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }

control::peer_answer peer_in_state(control::peer_state st) {
  control::peer_answer p;
  p.name = "x";
  p.state = st;
  return p;
}

TEST(HandshakeCodecs, EveryBodyRoundTrips) {
  hello_msg h{"monitor-1", "MONITOR", "ecdsa-p256-sha256", protection::tpm, bytes(91, 1), "IBM", true, bytes(91, 2),
              bytes(91, 3), bytes(kNonceSize, 4), {}, {}, {}, {}};
  auto h2 = decode_hello(encode(h));
  ASSERT_TRUE(h2.ok()) << h2.error().to_string();
  EXPECT_EQ(h2->name, h.name);
  EXPECT_EQ(h2->tpm_simulator, true);
  EXPECT_EQ(h2->static_ecdh_der, h.static_ecdh_der);
  // The HELLO that returns a cookie: possession signature and token proof after HU.
  h.cookie = bytes(40, 5);
  h.possession = bytes(71, 6);
  h.token_proof = bytes(kTokenProofSize, 7);
  h2 = decode_hello(encode(h));
  ASSERT_TRUE(h2.ok()) << h2.error().to_string();
  EXPECT_EQ(h2->cookie, h.cookie);
  EXPECT_EQ(h2->possession, h.possession);
  EXPECT_EQ(h2->token_proof, h.token_proof);
  const bytes hu = encode(h, false);
  const bytes full = encode(h);
  EXPECT_EQ(hu[0], 0x9d) << "HU is a fixarray of 13";
  EXPECT_EQ(full[0], 0x9f);
  EXPECT_EQ(bytes(hu.begin() + 1, hu.end()), bytes(full.begin() + 1, full.begin() + static_cast<std::ptrdiff_t>(hu.size())))
      << "HU is the HELLO's first 13 fields, byte for byte";
  h.cookie.clear();
  h.possession.clear();
  h.token_proof.clear();

  cookie_msg ck{bytes(40, 9)};
  EXPECT_EQ(decode_cookie(encode(ck))->cookie, ck.cookie);
  EXPECT_EQ(decode_cookie(encode(cookie_msg{bytes(kMaxCookie + 1, 9)})).error().code(), status_code::invalid_field);
  EXPECT_EQ(decode_cookie(encode(cookie_msg{})).error().code(), status_code::invalid_field);

  challenge_msg c{bytes(kNonceSize, 5), bytes(91, 6), {}, "broker", bytes(91, 7), hash_algorithm::sha384, bytes(300, 9),
                  bytes(70, 8)};
  auto c2 = decode_challenge(encode(c));
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->broker_hash, hash_algorithm::sha384);
  EXPECT_EQ(encode(*c2, false), encode(c, false)) << "the unsigned part re-encodes to the same bytes";
  EXPECT_EQ(c2->credential, c.credential);

  evidence_msg ev{bytes(900, 1), bytes(280, 2), bytes(90, 3), bytes(90, 4), bytes(140, 5), bytes(72, 6), {}, {}, {}};
  auto ev2 = decode_evidence(encode(ev));
  ASSERT_TRUE(ev2.ok()) << ev2.error().to_string();
  EXPECT_EQ(ev2->ek_certificate, ev.ek_certificate);
  EXPECT_TRUE(ev2->ecdh_public.empty());
  ev.ecdh_public = bytes(90, 7);  // a certification without its attest and signature
  EXPECT_EQ(decode_evidence(encode(ev)).error().code(), status_code::invalid_field);
  h.evidence = bytes(3000, 8);
  EXPECT_EQ(decode_hello(encode(h))->evidence, h.evidence);

  proof_msg pr{bytes(70, 1), {}, bytes(32, 2)};
  EXPECT_EQ(decode_proof(encode(pr))->activation, pr.activation);
  pr.activation = bytes(33, 2);
  EXPECT_EQ(decode_proof(encode(pr)).error().code(), status_code::invalid_field);

  welcome_msg w{bytes(kSessionIdSize, 9), bytes(32, 10), 1000, 3600};
  auto w2 = decode_welcome(encode(w));
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ(w2->rekey_after_seconds, 3600u);

  offer_msg o{bytes(91, 11), bytes(kNonceSize, 12), "P-384", bytes(kSessionIdSize, 13), {}, bytes(330, 18)};
  ASSERT_TRUE(decode_offer(encode(o)).ok());
  EXPECT_EQ(decode_offer(encode(o))->credential, o.credential);
  accept_msg a{bytes(91, 14), bytes(kNonceSize, 15), bytes(16, 16), bytes(91, 17), {}};
  ASSERT_TRUE(decode_accept(encode(a)).ok());
  a.credential = bytes(kMaxCredential + 1, 19);
  EXPECT_EQ(decode_accept(encode(a)).error().code(), status_code::invalid_field) << "a credential is at most 1024 bytes";
  o.credential = bytes(kMaxCredential + 1, 19);
  EXPECT_EQ(decode_offer(encode(o)).error().code(), status_code::invalid_field);
}

// The status codes' numbers are the wire's: schemas/protocol.md §12 lists each name
// with its number, and every one must be the code of that name here (and the other
// way round), so another implementation reading the schema agrees with this one.
TEST(StatusCodes, TheNumbersAreTheSchemasAndNeverMove) {
  std::ifstream in(std::string(AGENTBUS_SOURCE_DIR) + "/schemas/protocol.md");
  ASSERT_TRUE(in.good());
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto start = doc.find("## 12. Status codes");
  const auto end = doc.find("## 13.", start);
  ASSERT_NE(start, std::string::npos);
  const std::string section = doc.substr(start, end - start);
  const std::regex pair("`([a-z_]+)` ([0-9]+)");
  std::set<int> listed;
  for (auto it = std::sregex_iterator(section.begin(), section.end(), pair); it != std::sregex_iterator(); ++it) {
    const int number = std::stoi((*it)[2]);
    EXPECT_EQ(status_code_name(static_cast<status_code>(number)), (*it)[1].str()) << number;
    listed.insert(number);
  }
  for (int n = 1; n < 1000; ++n) {
    if (status_code_name(static_cast<status_code>(n)) != "unknown_code") {
      EXPECT_TRUE(listed.count(n)) << n << " is not in §12";
    }
  }
  EXPECT_EQ(static_cast<int>(status_code::not_authorised), 414);
  EXPECT_EQ(static_cast<int>(status_code::not_attested), 415);
  EXPECT_EQ(static_cast<int>(status_code::revoked_key), 416);
}

TEST(HandshakeCodecs, ErrAndRefusedCarryATypedCodeNeverOk) {
  error_msg e{status_code::unknown_agent, "not enrolled", bytes(kMessageIdSize, 1)};
  auto e2 = decode_error(encode(e));
  ASSERT_TRUE(e2.ok());
  EXPECT_EQ(e2->code, status_code::unknown_agent);
  EXPECT_EQ(e2->message_id, e.message_id);
  EXPECT_EQ(decode_error(encode(error_msg{status_code::ok, "x", {}})).error().code(), status_code::invalid_field);
  EXPECT_EQ(decode_error(encode(error_msg{status_code::malformed, "x", bytes(5, 1)})).error().code(),
            status_code::invalid_field) << "a message id is 16 bytes or none";
  EXPECT_FALSE(decode_error(b("unknown_agent: not enrolled")).ok()) << "the old text ERR is not a body";
  EXPECT_EQ(decode_refused(encode(refused_msg{status_code::ok, "fine?"})).error().code(), status_code::invalid_field);
  EXPECT_EQ(decode_refused(encode(refused_msg{status_code::key_changed, "r"}))->code, status_code::key_changed);
}

TEST(HandshakeCodecs, StrictDecodingRefusesWhatTheEncoderNeverWrites) {
  hello_msg h{"monitor-1", "MONITOR", "s", protection::tpm, bytes(91, 1), "", false, bytes(91, 2), {}, bytes(kNonceSize, 4), {},
              {}, {}, {}};
  bytes body = encode(h);
  bytes trailing = body;
  trailing.push_back(0);
  EXPECT_EQ(decode_hello(trailing).error().code(), status_code::trailing_bytes);
  h.name = "../etc";
  EXPECT_EQ(decode_hello(encode(h)).error().code(), status_code::invalid_field);
  EXPECT_EQ(decode_hello(bytes(kMaxHandshakeFrame + 1, 0x90)).error().code(), status_code::too_large);
  h.name = "monitor-1";
  h.nonce = bytes(5, 1);
  EXPECT_EQ(decode_hello(encode(h)).error().code(), status_code::invalid_field);
  h.nonce = bytes(kNonceSize, 4);
  // Proofs without a cookie, a cookie without the possession signature, a token proof
  // of another size: refused.
  h.possession = bytes(70, 1);
  EXPECT_EQ(decode_hello(encode(h)).error().code(), status_code::invalid_field);
  h.possession.clear();
  h.cookie = bytes(40, 1);
  EXPECT_EQ(decode_hello(encode(h)).error().code(), status_code::invalid_field);
  h.possession = bytes(70, 1);
  h.token_proof = bytes(31, 1);
  EXPECT_EQ(decode_hello(encode(h)).error().code(), status_code::invalid_field);
  h.token_proof = bytes(kTokenProofSize, 1);
  EXPECT_TRUE(decode_hello(encode(h)).ok());
  // Another version is named as such, whatever its field count.
  bytes v2 = encode(h);
  v2[1] = 2;
  EXPECT_EQ(decode_hello(v2).error().code(), status_code::unsupported_version);
  bytes twelve = encode(h, false);
  twelve[0] = 0x9c;
  twelve[1] = 2;
  EXPECT_EQ(decode_hello(twelve).error().code(), status_code::unsupported_version);
}

// ---------------------------------------------------------------- control

template <typename T>
T round_trip_request(const control::request& r) {
  auto d = control::decode_request(control::encode(42, r));
  EXPECT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_EQ(d->seq, 42u);
  return std::get<T>(d->message);
}

template <typename T>
T round_trip_answer(const control::answer& a) {
  auto d = control::decode_answer(control::encode(7, a));
  EXPECT_TRUE(d.ok()) << d.error().to_string();
  return std::get<T>(d->message);
}

TEST(ControlCodecs, EveryRequestRoundTrips) {
  EXPECT_EQ(round_trip_request<control::subscribe>(control::subscribe{"metrics/cpu", {}}).topic, "metrics/cpu");
  // A queue subscription travels as queue_subscribe [topic, group].
  const auto q = round_trip_request<control::subscribe>(control::subscribe{"metrics/>", "workers"});
  EXPECT_EQ(q.topic, "metrics/>");
  EXPECT_EQ(q.group, "workers");
  EXPECT_EQ(control::op_name(control::request{control::subscribe{"t", "g"}}), "queue_subscribe");
  EXPECT_EQ(round_trip_request<control::unsubscribe>(control::unsubscribe{"metrics/cpu"}).topic, "metrics/cpu");
  EXPECT_EQ(round_trip_request<control::peer_lookup>(control::peer_lookup{"director-1"}).name, "director-1");
  EXPECT_EQ(round_trip_request<control::watch_members>(control::watch_members{"t"}).topic, "t");
  (void)round_trip_request<control::stats_request>(control::stats_request{});
  (void)round_trip_request<control::ping>(control::ping{});
  (void)round_trip_request<control::bye>(control::bye{});
}

TEST(ControlCodecs, EveryAnswerRoundTrips) {
  auto s = round_trip_answer<control::subscribed>(control::subscribed{"t", {status_code::acl_denied, "no"}});
  EXPECT_EQ(s.outcome.code(), status_code::acl_denied);
  EXPECT_EQ(s.outcome.detail(), "no");
  EXPECT_TRUE(round_trip_answer<control::subscribed>(control::subscribed{"t", {}}).outcome.ok());
  control::peer_answer known{"monitor-1", control::peer_state::known, "MONITOR", "ecdsa-p256-sha256", protection::tpm,
                             "IBM", true, bytes(91, 1), {}};
  auto k = round_trip_answer<control::peer_answer>(known);
  EXPECT_EQ(k.state, control::peer_state::known);
  EXPECT_EQ(k.identity_der, known.identity_der);
  EXPECT_TRUE(k.evidence.empty());
  EXPECT_TRUE(k.tpm_simulator);
  known.evidence = bytes(3000, 7);  // the key, then the evidence, in one blob
  auto ke = round_trip_answer<control::peer_answer>(known);
  EXPECT_EQ(ke.identity_der, known.identity_der);
  EXPECT_EQ(ke.evidence, known.evidence);
  EXPECT_EQ(round_trip_answer<control::peer_answer>(peer_in_state(control::peer_state::unknown)).state,
            control::peer_state::unknown);
  EXPECT_EQ(round_trip_answer<control::peer_answer>(peer_in_state(control::peer_state::revoked)).state,
            control::peer_state::revoked);
  auto m = round_trip_answer<control::members>(control::members{"t", {"a", "b"}});
  EXPECT_EQ(m.subscribers, (std::vector<std::string>{"a", "b"}));
  auto n = round_trip_answer<control::nack>(control::nack{{status_code::replayed, "again"}, "director-1", bytes(16, 3)});
  EXPECT_EQ(n.reason.code(), status_code::replayed);
  EXPECT_EQ(n.recipient, "director-1");
  EXPECT_EQ(round_trip_answer<control::revoked>(control::revoked{"rogue-1"}).name, "rogue-1");
  EXPECT_EQ(round_trip_answer<control::key_changed>(control::key_changed{"monitor-1"}).name, "monitor-1");
  EXPECT_EQ(round_trip_answer<control::stats_answer>(control::stats_answer{"{}"}).json, "{}");
}

ctrl_msg generic(std::string op, std::vector<std::string> strings, bytes blob = {}, std::uint64_t number = 0) {
  ctrl_msg m;
  m.seq = 1;
  m.op = std::move(op);
  m.strings = std::move(strings);
  m.blob = std::move(blob);
  m.number = number;
  return m;
}

TEST(ControlCodecs, ShapesAnOperationDoesNotHaveAreInvalidField) {
  auto request = [](const ctrl_msg& m) { return control::decode_request(encode(m)).error().code(); };
  EXPECT_EQ(request(generic("subscribe", {"a", "b"})), status_code::invalid_field);
  EXPECT_EQ(request(generic("subscribe", {"a"}, b("blob"))), status_code::invalid_field);
  EXPECT_EQ(request(generic("peer", {})), status_code::invalid_field);
  EXPECT_EQ(request(generic("ping", {"x"})), status_code::invalid_field);
  EXPECT_EQ(request(generic("bye", {}, {}, 3)), status_code::invalid_field);
  EXPECT_EQ(request(generic("shutdown-all", {})), status_code::invalid_field);
  auto answer = [](const ctrl_msg& m) { return control::decode_answer(encode(m)).error().code(); };
  EXPECT_EQ(answer(generic("nack", {"ok", "", ""}, {}, 0)), status_code::invalid_field) << "a nack is never ok";
  EXPECT_EQ(answer(generic("nack", {"x", "", ""}, bytes(3, 1), 402)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("nack", {"x", "", ""}, {}, 70000)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("peer", {"x"}, {}, 3)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("peer", {"x", "R", "s", "tpm", "IBM", "1"}, {}, 0)), status_code::invalid_field)
      << "a known peer carries its key";
  EXPECT_EQ(answer(generic("peer", {"x", "R", "s", "tpm", "IBM", "yes"}, b("k"), 0)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("peer", {"x", "R", "s", "hsm", "IBM", "1"}, b("k"), 0)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("members", {})), status_code::invalid_field);
  EXPECT_EQ(answer(generic("subscribed", {"t"}, {}, 0)), status_code::invalid_field);
  EXPECT_EQ(answer(generic("launch", {})), status_code::invalid_field);
}

TEST(ControlCodecs, OpNamesAreAFixedSet) {
  EXPECT_EQ(control::op_name(control::request{control::peer_lookup{"x"}}), "peer");
  EXPECT_EQ(control::op_name(control::answer{control::nack{}}), "nack");
}

}  // namespace
}  // namespace agentbus::session
