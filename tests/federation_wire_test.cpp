// federation_wire_test.cpp — what brokers of a federation say to each other
// (schemas/federation.md): subjects and the permissions that confine them, the
// forwarded message, receipts, relayed refusals and signed directory records, each
// decoder against what it must refuse; NKEYs. No NATS here: python/tests/
// test_federation*.py run the same against a real nats-server cluster.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <msgpack.hpp>

#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "federation_wire.hpp"
#include "nats_nkey.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus::broker {
namespace {
namespace fw = federation_wire;
namespace fs = std::filesystem;

bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }

TEST(FederationSubjects, NameBothBrokersAndEscapeDots) {
  EXPECT_EQ(fw::agent_subject("ab", "west", "east", "mon.1"), "ab.b.west.a.east.mon%2E1");
  EXPECT_EQ(fw::topic_subject("ab", "west", "east", "metrics/cpu.load"), "ab.b.west.t.east.metrics.cpu%2Eload");
  EXPECT_EQ(fw::nack_subject("ab", "west", "east"), "ab.b.west.n.east");
  EXPECT_EQ(fw::receipt_subject("ab", "west", "east"), "ab.b.west.r.east");
  EXPECT_EQ(fw::inbox("ab", "west"), "ab.b.west.>");

  auto at = fw::classify("ab", "west", "ab.b.west.a.east.mon%2E1");
  EXPECT_EQ(at.kind, fw::inbox_kind::agent);
  EXPECT_EQ(at.from, "east");
  EXPECT_EQ(at.agent, "mon.1");  // unescaped
  EXPECT_EQ(fw::classify("ab", "west", "ab.b.west.t.east.metrics.cpu").kind, fw::inbox_kind::topic);
  EXPECT_EQ(fw::classify("ab", "west", "ab.b.west.r.east").kind, fw::inbox_kind::receipt);
  EXPECT_EQ(fw::classify("ab", "west", "ab.b.west.n.east").from, "east");
  // Not this broker's, malformed, or a kind without what it needs: other.
  for (const char* s : {"ab.b.north.a.east.x", "ab.b.west.a.east", "ab.b.west.t.east", "ab.b.west.n.east.x",
                        "ab.b.west.x.east.y", "ab.b.west.a..x", "ab.b.west", "zz.b.west.n.east"})
    EXPECT_EQ(fw::classify("ab", "west", s).kind, fw::inbox_kind::other) << s;
  // What a broker may publish names itself as the sender, and it subscribes to its own inbox.
  EXPECT_EQ(fw::publish_permissions("ab", "east"),
            (std::vector<std::string>{"ab.b.*.a.east.>", "ab.b.*.t.east.>", "ab.b.*.n.east", "ab.b.*.r.east"}));
  EXPECT_EQ(fw::subscribe_permissions("ab", "east"), (std::vector<std::string>{"ab.b.east.>"}));
}

TEST(FederationForwarded, RoundTripsAndRefusesWhatIsNotOne) {
  fw::forwarded_writer w("east");
  w.add(7, b("signed-1"), b("auth-1"), {});
  w.add(9, b("signed-2"), b("auth-2"), {"worker-1", "worker-2"});
  const bytes msg = w.finish();
  auto m = fw::decode_forwarded(msg, 1024);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->origin, "east");
  ASSERT_EQ(m->items.size(), 2u);
  EXPECT_EQ(m->items[0].seq, 7u);
  EXPECT_EQ(bytes(m->items[1].signed_part.begin(), m->items[1].signed_part.end()), b("signed-2"));
  EXPECT_EQ(m->items[1].picks, (std::vector<std::string>{"worker-1", "worker-2"}));

  // An envelope over max_frame_bytes, trailing bytes, no items, another version.
  EXPECT_EQ(fw::decode_forwarded(msg, 10).error().code(), status_code::too_large);
  bytes trailing = msg;
  trailing.push_back(0);
  EXPECT_FALSE(fw::decode_forwarded(trailing, 1024).ok());
  EXPECT_FALSE(fw::decode_forwarded(fw::forwarded_writer("east").finish(), 1024).ok());
  bytes other_version = msg;
  other_version[1] = 2;  // fixarray(3), then the version
  EXPECT_EQ(fw::decode_forwarded(other_version, 1024).error().code(), status_code::unsupported_version);
  // More than 256 items.
  fw::forwarded_writer many("east");
  for (int i = 0; i <= 256; ++i) many.add(static_cast<std::uint64_t>(i), b("s"), b("a"), {});
  EXPECT_FALSE(fw::decode_forwarded(many.finish(), 1024).ok());
}

TEST(FederationReceipts, RangesRoundTripAndAreBounded) {
  std::vector<std::uint64_t> seqs{5, 3, 4, 10, 11, 4, 20};
  fw::receipt r{"west", fw::ranges_of(seqs)};
  EXPECT_EQ(r.ranges, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{3, 5}, {10, 11}, {20, 20}}));
  auto back = fw::decode_receipt(fw::encode(r));
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->from, "west");
  EXPECT_EQ(back->ranges, r.ranges);
  EXPECT_FALSE(fw::decode_receipt(fw::encode(fw::receipt{"west", {{9, 3}}})).ok());            // backwards
  EXPECT_FALSE(fw::decode_receipt(fw::encode(fw::receipt{"west", {{1, 5'000'000}}})).ok());    // too long
  fw::receipt big{"west", {}};
  for (std::uint64_t i = 0; i < 1025; ++i) big.ranges.emplace_back(2 * i, 2 * i);
  EXPECT_FALSE(fw::decode_receipt(fw::encode(big)).ok());
}

TEST(FederationNacks, RoundTripAndNeedACode) {
  fw::relayed_nack n{"west", "mon-1", b("0123456789abcdef"), 405, "acl", "opt-1"};
  auto back = fw::decode_relayed_nack(fw::encode(n));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->code, 405u);
  EXPECT_EQ(back->recipient, "opt-1");
  n.code = 0;
  EXPECT_FALSE(fw::decode_relayed_nack(fw::encode(n)).ok());
}

class FederationRecords : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("agentbus-fedwire-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    pol_ = std::make_unique<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
    key_ = identity_key::create_software(dir_ / "east", "DEBUGGER", *pol_->suite_for("DEBUGGER"));
    other_ = identity_key::create_software(dir_ / "west", "DEBUGGER", *pol_->suite_for("DEBUGGER"));
  }
  void TearDown() override { fs::remove_all(dir_); }
  bytes sealed(const bytes& body, identity_key& by) {
    auto sig = by.sign_message(fw::signing_input(body));
    EXPECT_TRUE(sig.ok());
    return fw::seal(body, *sig);
  }
  fs::path dir_;
  std::unique_ptr<policy> pol_;
  std::unique_ptr<identity_key> key_, other_;
};

TEST_F(FederationRecords, AgentRecordsVerifyUnderTheirWriterOnly) {
  fw::agent_record a;
  a.writer = "east";
  a.written_ms = 42;
  a.name = "opt-1";
  a.role = "OPTIMIZER";
  a.suite = "ecdsa-p256-sha256";
  a.identity_der = key_->public_key().der();
  a.online = true;
  a.subscriptions = {"metrics/>", "jobs/run"};
  a.queue_groups = {{"jobs/run", "workers"}};
  const bytes value = sealed(fw::encode_body(a), *key_);

  auto o = fw::open_record(value);
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->kind, "agent");
  EXPECT_EQ(o->writer, "east");
  const suite& s = key_->key_suite();
  EXPECT_TRUE(fw::verify_record(*o, key_->public_key(), s).ok());
  EXPECT_FALSE(fw::verify_record(*o, other_->public_key(), s).ok());  // another broker's key
  auto back = fw::decode_agent(o->body);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->subscriptions, a.subscriptions);
  EXPECT_EQ(back->queue_groups, a.queue_groups);
  EXPECT_TRUE(back->online);

  // A body changed after signing does not verify; one signed by another key does not either.
  bytes changed_body = o->body;
  changed_body.back() ^= 1;
  fw::opened_record tampered = *o;
  tampered.body = changed_body;
  EXPECT_FALSE(fw::verify_record(tampered, key_->public_key(), s).ok());
  auto forged = fw::open_record(sealed(fw::encode_body(a), *other_));
  ASSERT_TRUE(forged.ok());
  EXPECT_FALSE(fw::verify_record(*forged, key_->public_key(), s).ok());
}

TEST_F(FederationRecords, DecodersRefuseWhatIsNotARecord) {
  EXPECT_FALSE(fw::open_record(b("garbage")).ok());
  fw::broker_record br{"east", 1, "ecdsa-p256-sha256", key_->public_key().der()};
  auto o = fw::open_record(sealed(fw::encode_body(br), *key_));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->kind, "broker");
  EXPECT_FALSE(fw::decode_agent(o->body).ok());  // a broker record is not an agent record
  EXPECT_TRUE(fw::decode_broker(o->body).ok());
  fw::revocation_record rv{"east", 2, "opt-1", std::string(64, 'c'), "stolen"};
  auto r = fw::decode_revocation(fw::open_record(sealed(fw::encode_body(rv), *key_))->body);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->fingerprint, std::string(64, 'c'));
  // An odd list of queue groups (not pairs) is refused.
  fw::agent_record a;
  a.writer = "east";
  a.name = "x";
  a.role = "OPTIMIZER";
  a.suite = "ecdsa-p256-sha256";
  a.identity_der = key_->public_key().der();
  bytes body = fw::encode_body(a);
  // Rebuild its last field (the queue groups) as a list of one string.
  ASSERT_EQ(body.back(), 0x90);  // an empty fixarray
  body.back() = 0x91;
  body.push_back(0xa1);
  body.push_back('g');
  EXPECT_FALSE(fw::decode_agent(body).ok());
}

TEST(NatsNkeys, ASeedGivesItsPublicKeyAndBrokenSeedsAreRefused) {
  const nkey_pair k = generate_user_nkey();
  EXPECT_EQ(k.seed.substr(0, 2), "SU");
  EXPECT_EQ(k.public_key.substr(0, 1), "U");
  EXPECT_EQ(k.seed.size(), 58u);
  EXPECT_EQ(k.public_key.size(), 56u);
  EXPECT_EQ(user_nkey_public_from_seed(k.seed), k.public_key);
  EXPECT_NE(generate_user_nkey().public_key, k.public_key);
  std::string broken = k.seed;
  broken[10] = broken[10] == 'A' ? 'B' : 'A';
  EXPECT_THROW((void)user_nkey_public_from_seed(broken), std::runtime_error);  // checksum
  EXPECT_THROW((void)user_nkey_public_from_seed("SU" + std::string(10, 'A')), std::runtime_error);
  EXPECT_THROW((void)user_nkey_public_from_seed(k.public_key), std::runtime_error);  // not a seed
  // A seed file: the line that starts with SU, other lines ignored.
  const fs::path f = fs::temp_directory_path() / ("agentbus-nkey-" + std::to_string(::getpid()));
  {
    std::ofstream out(f);
    out << "# a comment\n" << k.seed << "\n";
  }
  EXPECT_EQ(user_nkey_public_from_seed_file(f), k.public_key);
  fs::remove(f);
  EXPECT_THROW((void)user_nkey_public_from_seed_file(f), std::runtime_error);
}

}  // namespace
}  // namespace agentbus::broker
