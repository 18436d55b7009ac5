// tpm-batch end to end: Merkle batch signing, verification caches, every tampering
// case refused at the broker and at the receiver, and a TPM that stops mid-run.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "session/handshake.hpp"
#include "support/bus_fixture.hpp"
#include "support/inbox.hpp"

namespace agentbus {
namespace {

using namespace std::chrono_literals;
using testing::broker_process;
using testing::swtpm_process;
using testing::connect_agent;
using testing::inbox;
using testing::wait_until;

using testing::text;

agent_options batching() {
  agent_options o;
  o.batch_signing = true;
  return o;
}

TEST(Batch, BatchTrafficMixedWithDirectTrafficAllArrivesWithFewTpmSignatures) {
  broker_process b;
  testing::scoped_temp_dir dir;
  auto monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, batching());
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");  // direct mode
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  constexpr int kMessages = 1000;
  for (int i = 0; i < kMessages; ++i)
    ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(director->send("monitor-1", "text/plain", text("direct")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages && m.count() == 20; }, 30s)) << d.count() << d.describe();
  EXPECT_EQ(d.describe() + m.describe(), "");
  {
    std::lock_guard lock(d.mu);
    for (const auto& msg : d.messages) ASSERT_EQ(msg.level, assurance::tpm_batch);
    // Order is kept: the batch signer completes envelopes in submission order.
    for (int i = 0; i < kMessages; ++i) ASSERT_EQ(std::string(d.messages[i].header.payload.begin(), d.messages[i].header.payload.end()), std::to_string(i));
  }
  {
    std::lock_guard lock(m.mu);
    for (const auto& msg : m.messages) ASSERT_EQ(msg.level, assurance::tpm);
  }
  auto st = monitor->stats();
  EXPECT_EQ(st.batched_envelopes, static_cast<std::uint64_t>(kMessages));
  EXPECT_LT(st.batch_roots, static_cast<std::uint64_t>(kMessages / 4)) << "batches did not grow under load";
  EXPECT_GE(st.batch_roots, 1u);
}

// tamper runs one batch-tampering case against `b` and returns the inboxes.
struct tamper_case {
  const char* name;
  status_code expected;
  // Sends the bad envelope; `captured` holds the auth part of an earlier, delivered one.
  std::function<status(agent&, const envelope_auth& captured)> send_bad;
};

class BatchTampering : public ::testing::TestWithParam<std::tuple<tamper_case, bool>> {};

TEST_P(BatchTampering, IsRefusedWithItsOwnReason) {
  const auto& [c, at_receiver] = GetParam();
  broker_process::options o;
  o.permissive = at_receiver;  // the receiver must refuse what a broker wrongly forwards
  broker_process b(o);
  testing::scoped_temp_dir dir;
  auto monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, batching());
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);

  // A good batch envelope first; keep its auth part (signature and proof).
  auto captured = std::make_shared<envelope_auth>();
  testing::seal_tweaks keep;
  keep.edit_auth = [captured](envelope_auth& a) { *captured = a; };
  ASSERT_TRUE(testing::agent_access::send_tweaked(*monitor.client, recipient_kind::agent, "director-1", "text/plain",
                                              text("good"), keep).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe() << m.describe();
  ASSERT_EQ(captured->level, assurance::tpm_batch);

  ASSERT_TRUE(c.send_bad(*monitor.client, *captured).ok());
  const std::string where = at_receiver ? "receiver" : "broker";
  inbox& sees = at_receiver ? d : m;
  ASSERT_TRUE(wait_until([&] { return sees.has_rejection(c.expected, where); })) << d.describe() << m.describe();
  EXPECT_EQ(d.count(), 1u) << "a tampered batch envelope was delivered";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BatchTampering,
    ::testing::Combine(
        ::testing::Values(
            tamper_case{"MovedLeaf", status_code::bad_batch_proof,
                        // This envelope presents the earlier batch's signature and path.
                        [](agent& a, const envelope_auth& good) {
                          testing::seal_tweaks t;
                          t.edit_auth = [good](envelope_auth& x) {
                            x.signature = good.signature;
                            x.batch = good.batch;
                          };
                          return testing::agent_access::send_tweaked(a, recipient_kind::agent, "director-1", "text/plain",
                                                                 text("moved"), t);
                        }},
            tamper_case{"RootNotSignedBySender", status_code::bad_batch_signature,
                        [](agent& a, const envelope_auth&) {
                          testing::seal_tweaks t;
                          t.edit_auth = [](envelope_auth& x) { x.signature[x.signature.size() / 2] ^= 0x10; };
                          return testing::agent_access::send_tweaked(a, recipient_kind::agent, "director-1", "text/plain",
                                                                 text("bad root signature"), t);
                        }},
            tamper_case{"TamperedAfterSigning", status_code::bad_batch_signature,
                        [](agent& a, const envelope_auth&) {
                          testing::seal_tweaks t;
                          t.edit_after_signing = [](bytes& s) { s[s.size() - 1] ^= 1; };
                          return testing::agent_access::send_tweaked(a, recipient_kind::agent, "director-1", "text/plain",
                                                                 text("tampered"), t);
                        }},
            tamper_case{"ReplayedBatchEnvelope", status_code::replayed,
                        [](agent& a, const envelope_auth&) { return testing::agent_access::resend_last(a); }}),
        ::testing::Bool()),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) + (std::get<1>(info.param) ? "_AtReceiver" : "_AtBroker");
    });

TEST(Batch, ATpmThatStopsMidRunFailsTheBatchAndTellsTheSender) {
  broker_process b;
  testing::scoped_temp_dir dir;
  auto pol = std::make_shared<policy>(policy::load_file(testing::source_dir() / "config" / "policy.toml"));
  swtpm_process monitor_tpm;
  tpm::tpm_options fast;
  fast.deadline = 500ms;  // fail closed quickly for the test
  auto t = std::make_shared<tpm::tpm>(monitor_tpm.tcti(), fast);
  auto created = identity_key::create_tpm(dir.path() / "monitor-1", "MONITOR", *pol->suite_for("MONITOR"), t);
  ASSERT_TRUE(created.ok());
  std::shared_ptr<identity_key> key = std::move(created).value();
  agent_options o = batching();
  o.name = "monitor-1";
  o.broker_endpoint = b.endpoint();
  b.prepare(o, "MONITOR", *key);
  agent monitor(o, key, pol);
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d, m;
  d.attach(*director.client);
  m.attach(monitor);
  ASSERT_TRUE(monitor.send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; }));

  ASSERT_EQ(::kill(monitor_tpm.pid(), SIGSTOP), 0);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(monitor.send("director-1", "text/plain", text("while frozen")).ok());
  ASSERT_TRUE(wait_until([&] { return m.has_rejection(status_code::tpm_unavailable, "sender"); }, 10s)) << m.describe();
  ::kill(monitor_tpm.pid(), SIGCONT);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(d.count(), 1u) << "an envelope without its TPM signature was delivered";
  EXPECT_EQ(d.describe(), "");
}


// ---------------------------------------------------------------- wire batches

// metric_value reads one unlabelled sample line, not its # HELP / # TYPE lines.
std::uint64_t metric_value(broker_process& b, const std::string& family) {
  return static_cast<std::uint64_t>(b.metric(family).value_or(0));
}

std::uint64_t wire_batches_counted(broker_process& b) { return metric_value(b, "wire_batches_total"); }
std::uint64_t wire_batches_sent(broker_process& b) { return metric_value(b, "wire_batches_sent_total"); }

TEST(WireBatch, WireAndEnvelopeAtATimeDeliverTheSameTrafficInOrder) {
  broker_process b;
  testing::scoped_temp_dir dir;
  agent_options one_by_one = batching();
  one_by_one.wire_batching = false;
  auto separate = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, one_by_one);
  auto wired = connect_agent(b, dir.path(), "monitor-2", "MONITOR", false, batching());
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);
  constexpr int kMessages = 600;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(separate->send("director-1", "text/plain", text(std::to_string(i))).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages; }, 30s)) << d.count() << d.describe();
  EXPECT_EQ(wire_batches_counted(b), 0u) << "wire_batching = false still sent wire batches";
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(wired->send("director-1", "text/plain", text(std::to_string(i))).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 2 * kMessages; }, 30s)) << d.count() << d.describe();
  EXPECT_EQ(d.describe(), "");
  const std::uint64_t wire_batches = wire_batches_counted(b);
  EXPECT_GE(wire_batches, 1u);
  EXPECT_LT(wire_batches, static_cast<std::uint64_t>(kMessages / 4)) << "wire batches did not carry several envelopes";
  // Fanned out as wire batches too (one per received batch of several envelopes).
  EXPECT_GE(wire_batches_sent(b), 1u);
  EXPECT_LE(wire_batches_sent(b), wire_batches);
  std::lock_guard lock(d.mu);
  for (int i = 0; i < 2 * kMessages; ++i) {
    const auto& m = d.messages[i];
    EXPECT_EQ(m.header.sender, i < kMessages ? "monitor-1" : "monitor-2");
    EXPECT_EQ(m.level, assurance::tpm_batch);
    ASSERT_EQ(std::string(m.header.payload.begin(), m.header.payload.end()), std::to_string(i % kMessages));
  }
}

// Large envelopes: a signed batch is split into wire batches by size (the split counts
// each envelope's exact encoded size, inclusion path included): 16 KiB envelopes go 3
// to a 64 KiB wire batch, so there are more wire batches than a split by count alone
// (16 a batch) could make.
TEST(WireBatch, LargeEnvelopesAreSplitWithinTheSizeLimitAndAllArrive) {
  broker_process b;
  testing::scoped_temp_dir dir;
  auto monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, batching());
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d, m;
  d.attach(*director.client);
  m.attach(*monitor.client);
  constexpr int kMessages = 600;
  constexpr std::size_t kPayload = 16 * 1024;
  static_assert(4 * kPayload >= session::kWireBatchBytes && 3 * (kPayload + 1024) < session::kWireBatchBytes);
  for (int i = 0; i < kMessages; ++i) {
    bytes payload(kPayload, static_cast<std::uint8_t>(i));
    ASSERT_TRUE(monitor->send("director-1", "application/octet-stream", payload).ok());
  }
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages || !m.describe().empty(); }, 60s)) << d.count();
  EXPECT_EQ(m.describe() + d.describe(), "");
  EXPECT_EQ(d.count(), static_cast<std::size_t>(kMessages));
  EXPECT_GT(wire_batches_counted(b), (kMessages + session::kWireBatchEnvelopes - 1) / session::kWireBatchEnvelopes);
}

struct wire_tamper_case {
  const char* name;
  status_code expected;
  std::function<void(std::vector<bytes>& frames)> edit;  // frames: BATCH, session id, MAC, (signed, auth)...
};

// batching_pair: a broker, monitor-1 signing in tpm-batch mode (wire batches on) and
// director-1 signing directly, each with an inbox (m, d).
class batching_pair : public ::testing::TestWithParam<wire_tamper_case> {
 protected:
  batching_pair() {
    d.attach(*director.client);
    m.attach(*monitor.client);
  }
  broker_process b;
  testing::scoped_temp_dir dir;
  testing::bus_agent monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, batching());
  testing::bus_agent director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d, m;
};

class WireBatchTampering : public batching_pair {};

TEST_P(WireBatchTampering, WholeBatchIsRefusedAtTheBrokerAndTheBusGoesOn) {
  const auto& c = GetParam();
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("before")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 1; })) << d.describe() << m.describe();

  testing::seal_tweaks t;
  t.edit_wire_batch = c.edit;
  ASSERT_TRUE(testing::agent_access::send_tweaked(*monitor.client, recipient_kind::agent, "director-1", "text/plain",
                                              text("tampered"), t).ok());
  ASSERT_TRUE(wait_until([&] { return m.has_rejection(c.expected, "broker"); })) << m.describe();
  // The broker keeps serving this sender: the next envelope arrives, the bad one never.
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("after")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == 2; })) << d.describe() << m.describe();
  std::this_thread::sleep_for(100ms);
  std::lock_guard lock(d.mu);
  ASSERT_EQ(d.messages.size(), 2u);
  for (const auto& got : d.messages) EXPECT_NE(std::string(got.header.payload.begin(), got.header.payload.end()), "tampered");
}

void flip_last(bytes& b) { b.back() ^= 0x01; }

// wire_batch_tamperings: alterations of a wire batch after its MAC (frames: BATCH,
// session id, MAC, then signed and auth part of each envelope), refused as a whole by
// whoever checks it: the broker (from an agent) or the receiver (from the broker).
std::vector<wire_tamper_case> wire_batch_tamperings() {
  return {
      wire_tamper_case{"MemberPayloadChanged", status_code::bad_mac, [](std::vector<bytes>& f) { flip_last(f[3]); }},
      wire_tamper_case{"MemberSignatureChanged", status_code::bad_mac,
                       [](std::vector<bytes>& f) {
                         auto auth = decode_auth_part(f[4]);
                         ASSERT_TRUE(auth.ok());
                         flip_last(auth->signature);
                         f[4] = encode_auth_part(*auth);
                       }},
      wire_tamper_case{"MacChanged", status_code::bad_mac, [](std::vector<bytes>& f) { flip_last(f[2]); }},
      wire_tamper_case{"UnknownSession", status_code::bad_mac, [](std::vector<bytes>& f) { flip_last(f[1]); }},
      wire_tamper_case{"MemberAdded", status_code::bad_mac,
                       [](std::vector<bytes>& f) {
                         // The same envelope twice: replayed inside the batch, and not what was MACed.
                         f.push_back(f[3]);
                         f.push_back(f[4]);
                       }},
      wire_tamper_case{"MemberWithItsOwnHopMac", status_code::malformed,
                       [](std::vector<bytes>& f) {
                         auto auth = decode_auth_part(f[4]);
                         ASSERT_TRUE(auth.ok());
                         auth->hop_mac = session_mac{"", bytes(16, 0x11), bytes(32, 0x22)};
                         f[4] = encode_auth_part(*auth);
                       }},
      wire_tamper_case{"HalfAnEnvelope", status_code::malformed, [](std::vector<bytes>& f) { f.pop_back(); }},
      wire_tamper_case{"OverTheSizeLimit", status_code::too_large,
                       [](std::vector<bytes>& f) {
                         const bytes auth = f[4];
                         for (int i = 0; i < 6; ++i) {
                           f.push_back(bytes(900 * 1024, 0x93));
                           f.push_back(auth);
                         }
                       }},
      wire_tamper_case{"MoreEnvelopesThanTheLimit", status_code::malformed,
                       [](std::vector<bytes>& f) {
                         const bytes signed_part = f[3], auth = f[4];
                         for (int i = 0; i < 1024; ++i) {
                           f.push_back(signed_part);
                           f.push_back(auth);
                         }
                       }},
  };
}

std::string case_name(const ::testing::TestParamInfo<wire_tamper_case>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, WireBatchTampering, ::testing::ValuesIn(wire_batch_tamperings()), case_name);


// The broker's switch: [forwarding] wire_batches = false forwards every envelope of a
// received wire batch on its own (for agents that do not know BATCH from the broker).
TEST(WireBatch, FanOutSwitchedOffForwardsEnvelopeByEnvelope) {
  broker_process::options o;
  o.extra_sections = "[forwarding]\nwire_batches = false\n";
  broker_process b(o);
  testing::scoped_temp_dir dir;
  auto monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, batching());
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR");
  inbox d;
  d.attach(*director.client);
  constexpr int kMessages = 400;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages; }, 30s)) << d.count() << d.describe();
  EXPECT_EQ(d.describe(), "");
  EXPECT_GE(wire_batches_counted(b), 1u) << "the sender sent no wire batch: the test proves nothing";
  EXPECT_EQ(wire_batches_sent(b), 0u);
  std::lock_guard lock(d.mu);
  for (int i = 0; i < kMessages; ++i)
    ASSERT_EQ(std::string(d.messages[i].header.payload.begin(), d.messages[i].header.payload.end()), std::to_string(i));
}

// A fan-out batch from a sender the receiver refuses (its own policy revokes it) is
// not malformed: each envelope is refused for its sender, by message id, as it would
// be on its own. (A topic: the sender needs no session with this receiver to reach it.)
TEST(WireBatch, FanOutFromARefusedSenderRefusesEachEnvelopeForItsSender) {
  broker_process b;
  testing::scoped_temp_dir dir;
  std::string text_policy = testing::read_text(testing::source_dir() / "config" / "policy.toml");
  text_policy.replace(text_policy.find("revoked = []"), 12, "revoked = [\"monitor-1\"]");
  testing::write_text(dir.path() / "director-policy.toml", text_policy);
  auto director_policy = std::make_shared<policy>(policy::load_file(dir.path() / "director-policy.toml"));
  // The subscriber refuses the publisher's session offer: the first publish waits
  // session_timeout for it, the next ones leave that subscriber out at once (no new
  // offer for kOfferRetryAfter), so the envelopes reach the signer together and travel
  // in wire batches.
  agent_options o = batching();
  o.session_timeout = std::chrono::milliseconds(200);
  auto monitor = connect_agent(b, dir.path(), "monitor-1", "MONITOR", false, o);
  auto director = connect_agent(b, dir.path(), "director-1", "DIRECTOR", false, {}, director_policy);
  inbox d;
  d.attach(*director.client);
  ASSERT_TRUE(director->subscribe("metrics/cpu", [](const message&) {}).ok());
  constexpr int kMessages = 128;
  for (int i = 0; i < kMessages; ++i)
    ASSERT_TRUE(monitor->publish("metrics/cpu", "text/plain", text(std::to_string(i))).ok());
  auto refused_for_sender = [&] {
    std::lock_guard lock(d.mu);
    std::set<bytes> ids;
    for (const auto& r : d.rejections)
      if (r.reason.code() == status_code::revoked_agent && r.sender == "monitor-1") ids.insert(r.message_id);
    return ids.size();
  };
  // Every envelope refused by its id; the publisher's session offer (refused too) adds
  // one, or two if the run outlasts the retry interval: not one an envelope.
  ASSERT_TRUE(wait_until([&] { return refused_for_sender() >= kMessages; }, 30s)) << refused_for_sender() << "\n" << d.describe();
  std::this_thread::sleep_for(200ms);
  EXPECT_LE(refused_for_sender(), static_cast<std::size_t>(kMessages) + 2) << "the publisher re-offered a session per envelope";
  EXPECT_GE(wire_batches_sent(b), 1u) << "no wire batch reached the receiver: the test proves nothing";
  EXPECT_EQ(d.count(), 0u);
  EXPECT_EQ(d.describe().find("malformed"), std::string::npos) << d.describe();
}

// Receiver side of fan-out wire batches: a wire batch from the broker that was altered
// after its MAC (by the broker or on the path) is refused as a whole by the receiver,
// with its reason, and nothing of it is delivered; the bus goes on.
class FanOutTampering : public batching_pair {};

TEST_P(FanOutTampering, WholeBatchIsRefusedAtTheReceiverAndTheBusGoesOn) {
  const auto& c = GetParam();

  // The first wire batch of several envelopes that reaches director-1 is altered;
  // its members' payloads are noted before that.
  struct tampered_batch {
    std::mutex mu;
    bool done = false;
    std::vector<std::string> payloads;
  };
  auto seen = std::make_shared<tampered_batch>();
  testing::agent_access::edit_received(*director.client, [seen, edit = c.edit](std::vector<bytes>& f) {
    std::lock_guard lock(seen->mu);
    if (seen->done || f.empty() || std::string(f[0].begin(), f[0].end()) != "BATCH" || f.size() < 7) return;
    for (std::size_t i = 3; i + 1 < f.size(); i += 2) {
      auto h = decode_signed_part(f[i]);
      ASSERT_TRUE(h.ok());
      seen->payloads.emplace_back(h->payload.begin(), h->payload.end());
    }
    edit(f);
    seen->done = true;
  });
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(monitor->send("director-1", "text/plain", text(std::to_string(i))).ok());
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(seen->mu);
    return seen->done;
  }, 30s)) << "the broker sent no wire batch of several envelopes";
  std::size_t lost = 0;
  {
    std::lock_guard lock(seen->mu);
    lost = seen->payloads.size();
  }
  ASSERT_TRUE(wait_until([&] { return d.has_rejection(c.expected, "receiver"); })) << d.describe();
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages - lost; }, 30s)) << d.count() << " + " << lost << "\n" << d.describe();
  // The sender hears nothing from the broker (it forwarded in good faith)...
  EXPECT_EQ(m.describe(), "");
  // ... and later traffic still arrives.
  testing::agent_access::edit_received(*director.client, {});
  ASSERT_TRUE(monitor->send("director-1", "text/plain", text("after")).ok());
  ASSERT_TRUE(wait_until([&] { return d.count() == kMessages - lost + 1; })) << d.describe();
  std::lock_guard lock(d.mu), lock2(seen->mu);
  for (const auto& got : d.messages) {
    const std::string p(got.header.payload.begin(), got.header.payload.end());
    EXPECT_EQ(std::count(seen->payloads.begin(), seen->payloads.end(), p), 0) << p << " of the altered batch was delivered";
  }
}

// The broker's batches carry several envelopes (2 or more here), so members can also
// be dropped or reordered.
std::vector<wire_tamper_case> fan_out_tamperings() {
  std::vector<wire_tamper_case> cases = wire_batch_tamperings();
  cases.push_back({"MemberRemoved", status_code::bad_mac, [](std::vector<bytes>& f) { f.resize(f.size() - 2); }});
  cases.push_back({"MembersSwapped", status_code::bad_mac,
                   [](std::vector<bytes>& f) {
                     std::swap(f[3], f[5]);
                     std::swap(f[4], f[6]);
                   }});
  cases.push_back({"MemberUndecodable", status_code::malformed, [](std::vector<bytes>& f) { f[3] = bytes{0x93, 0x01}; }});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, FanOutTampering, ::testing::ValuesIn(fan_out_tamperings()), case_name);

}  // namespace
}  // namespace agentbus
