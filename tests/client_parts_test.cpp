// client_parts_test.cpp — the agent's stateful parts without a broker: the peer
// directory, the outbound queue, the dispatcher's flow control, the requests table
// and the batch signer (with a software identity).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "agentbus/identity.hpp"
#include "client/batch_signer.hpp"
#include "client/dispatcher.hpp"
#include "client/outbound_queue.hpp"
#include "client/peer_directory.hpp"
#include "client/requests.hpp"
#include "envelope/merkle.hpp"
#include "support/swtpm_environment.hpp"

namespace agentbus::client {
namespace {

namespace control = session::control;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- peer directory

control::peer_answer known(const std::string& name, const std::string& role, const crypto::public_key& key) {
  return {name, control::peer_state::known, role, "", protection::tpm, "IBM", false, key.der(), {}};
}

struct directory_bench {
  agent_options opts;
  policy pol = policy::builtin_default();
  int sent = 0;
  bool fail_sends = false;
  std::unique_ptr<peer_directory> dir;
  directory_bench() {
    opts.session_timeout = 200ms;
    dir = std::make_unique<peer_directory>(opts, pol, [this](const control::request&) {
      ++sent;
      return fail_sends ? status{status_code::overloaded, "outbound queue full"} : status{};
    });
  }
};

// A lookup the outbound queue refused used to be marked asked all the same: the
// sender's envelopes stayed parked for good. It is asked again now.
TEST(PeerDirectory, ALookupThatCouldNotBeSentIsAskedAgain) {
  directory_bench b;
  b.fail_sends = true;
  EXPECT_EQ(b.dir->ask("monitor-1").code(), status_code::overloaded);
  b.fail_sends = false;
  EXPECT_TRUE(b.dir->ask("monitor-1").ok());
  EXPECT_EQ(b.sent, 2);
  EXPECT_TRUE(b.dir->ask("monitor-1").ok());
  EXPECT_EQ(b.sent, 2) << "one lookup out at a time per name";
}

TEST(PeerDirectory, AnswersArePinnedOnlyWhenTheLocalPolicyAgrees) {
  directory_bench b;
  auto p256 = crypto::ec_keypair::generate(ec_curve::p256).public_part();
  auto p384 = crypto::ec_keypair::generate(ec_curve::p384).public_part();
  b.dir->on_answer(known("monitor-1", "MONITOR", p256));
  auto m = b.dir->check("monitor-1");
  ASSERT_TRUE(m.peer);
  EXPECT_EQ(m.peer->role, "MONITOR");
  EXPECT_EQ(m.peer->key_id, p256.fingerprint());
  // A key of another type than the role's: the broker cannot make it the peer's.
  b.dir->on_answer(known("optimizer-1", "OPTIMIZER", p384));
  auto o = b.dir->check("optimizer-1");
  ASSERT_TRUE(o.failure);
  EXPECT_EQ(o.failure->code(), status_code::wrong_key);
  // A role the policy does not have.
  b.dir->on_answer(known("x-1", "NOPE", p256));
  EXPECT_EQ(b.dir->check("x-1").failure->code(), status_code::unknown_agent);
  // Another key for a pinned peer.
  b.dir->on_answer(known("monitor-1", "MONITOR", crypto::ec_keypair::generate(ec_curve::p256).public_part()));
  EXPECT_EQ(b.dir->check("monitor-1").peer->key_id, p256.fingerprint()) << "the pin holds";
}

TEST(PeerDirectory, FailuresExpireRevocationsDoNot) {
  directory_bench b;
  control::peer_answer unknown;
  unknown.name = "ghost-1";
  unknown.state = control::peer_state::unknown;
  b.dir->on_answer(unknown);
  EXPECT_EQ(b.dir->check("ghost-1").failure->code(), status_code::unknown_agent);
  b.dir->revoked("rogue-1");
  EXPECT_EQ(b.dir->check("rogue-1").failure->code(), status_code::revoked_agent);
  auto r = b.dir->resolve("rogue-1");
  EXPECT_EQ(r.error().code(), status_code::revoked_agent) << "a fresh send does not ask past a revocation";
  auto g = b.dir->resolve("nobody-1");
  EXPECT_EQ(g.error().code(), status_code::timeout);
}

// ---------------------------------------------------------------- outbound queue

TEST(OutboundQueue, BoundedInOrderAndWhatTheSocketRefusedGoesBackToTheFront) {
  outbound_queue q(3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(q.push({bytes{static_cast<std::uint8_t>(i)}}).ok());
  EXPECT_EQ(q.push({bytes{9}}).code(), status_code::overloaded);
  auto taken = q.take_all();
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_TRUE(q.push({bytes{3}}).ok());
  taken.pop_front();  // sent; the other two refused at the high-water mark
  q.put_back(taken);
  auto again = q.take_all();
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[0][0], bytes{1});
  EXPECT_EQ(again[2][0], bytes{3});
}

TEST(OutboundQueue, BuiltMessagesAreNumberedInQueueOrder) {
  outbound_queue q(10'000);
  std::atomic<std::uint8_t> seq{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) ASSERT_TRUE(q.push_built([&] { return net::frames{bytes{seq++}}; }).ok());
    });
  for (auto& t : threads) t.join();
  auto all = q.take_all();
  ASSERT_EQ(all.size(), 200u);
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i][0][0], static_cast<std::uint8_t>(i));
}

TEST(OutboundQueue, HeldMessagesStayQueued) {
  outbound_queue q(4);
  q.hold(true);
  EXPECT_TRUE(q.push({bytes{1}}).ok());
  EXPECT_TRUE(q.take_all().empty());
  q.hold(false);
  EXPECT_EQ(q.take_all().size(), 1u);
}

// ---------------------------------------------------------------- dispatcher

TEST(Dispatcher, SaturatesAtItsCapacityAndSaysWhenThereIsRoomAgain) {
  std::atomic<int> rooms{0};
  dispatcher d(3, "test", [&] { ++rooms; });
  std::atomic<bool> release{false};
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(d.push([&] {
      while (!release) std::this_thread::sleep_for(1ms);
      ++ran;
    }));
  EXPECT_TRUE(d.saturated());
  d.start();
  release = true;
  for (int i = 0; i < 200 && ran < 3; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ran, 3);
  EXPECT_FALSE(d.saturated());
  EXPECT_GE(rooms, 1);
  EXPECT_EQ(d.dropped(), 0u);
  d.push([] { throw std::runtime_error("a handler that throws"); });
  std::atomic<bool> after{false};
  d.push([&] { after = true; });
  for (int i = 0; i < 200 && !after; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(after) << "a throwing handler does not stop the dispatcher";
}

TEST(Dispatcher, DropsOnlyPastItsHardLimitAndCountsIt) {
  dispatcher d(2, "test", {});
  std::vector<std::function<void()>> jobs(d.hard_limit() + 5, [] {});
  EXPECT_EQ(d.push_all(jobs), 5u);
  EXPECT_EQ(d.dropped(), 5u);
}

// ---------------------------------------------------------------- requests

TEST(Requests, EachWaiterIsCompletedOnceByItsReplyARefusalOrShutdown) {
  requests r;
  const bytes a(16, 1), b(16, 2);
  auto fa = r.expect(a);
  auto fb = r.expect(b);
  EXPECT_TRUE(r.complete(a, status{status_code::acl_denied, "refused by the broker"}));
  EXPECT_FALSE(r.complete(a, status{status_code::timeout, "twice"}));
  EXPECT_EQ(fa.get().error().code(), status_code::acl_denied);
  r.fail_all(status{status_code::timeout, "agent stopped"});
  EXPECT_EQ(fb.get().error().code(), status_code::timeout);
  EXPECT_FALSE(r.complete(b, status{status_code::timeout, "late"}));
}

// ---------------------------------------------------------------- batch signer

std::shared_ptr<identity_key> software_identity(const std::filesystem::path& dir) {
  return identity_key::create_software(dir, "MONITOR", *policy::builtin_default().suite_for("MONITOR"));
}

TEST(BatchSigner, EveryEnvelopeGetsAProofToARootItsIdentitySignedInSubmissionOrder) {
  testing::scoped_temp_dir tmp;
  auto key = software_identity(tmp.path() / "k");
  std::atomic<int> batch_ends{0};
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::pair<bytes, std::pair<bytes, batch_proof>>> done;  // digest → (signature, proof)
  {
    batch_signer signer(key, 8, {}, [&] { ++batch_ends; });
    for (int i = 0; i < 60; ++i) {
      bytes digest = crypto::digest(hash_algorithm::sha256, bytes{static_cast<std::uint8_t>(i)});
      signer.submit(digest, [&, i, digest](const result<bytes>& sig, batch_proof proof) {
        ASSERT_TRUE(sig.ok());
        std::lock_guard lock(mu);
        order.push_back(i);
        done.push_back({digest, {sig.value(), proof}});
      });
    }
  }  // the destructor signs what was submitted
  ASSERT_EQ(done.size(), 60u);
  for (int i = 0; i < 60; ++i) ASSERT_EQ(order[i], i);
  for (const auto& [digest, sp] : done) {
    EXPECT_LE(sp.second.leaf_count, 8u);
    auto root = merkle::root_from_proof(hash_algorithm::sha256, digest, sp.second);
    ASSERT_TRUE(root.ok());
    // The signature is over the root itself (as a digest), not over a hash of it.
    EXPECT_TRUE(crypto::verify_digest(key->public_key(), key->key_suite().key, hash_algorithm::sha256, *root, sp.first).ok());
  }
  EXPECT_GE(batch_ends.load(), 60 / 8);
}

// A signing failure reaches every envelope of its batch; none is sent unsigned.
class failing_identity final : public identity_key {
 public:
  explicit failing_identity(const identity_key& real) : identity_key(real.metadata(), real.public_key()) {}
  result<bytes> sign_digest(byte_view) override { return status{status_code::tpm_unavailable, "the TPM stopped"}; }
};

TEST(BatchSigner, ASigningFailureFailsEveryEnvelopeOfItsBatch) {
  testing::scoped_temp_dir tmp;
  auto real = software_identity(tmp.path() / "k");
  auto broken = std::make_shared<failing_identity>(*real);
  std::atomic<int> failed{0};
  {
    batch_signer signer(broken, 16);
    for (int i = 0; i < 20; ++i)
      signer.submit(bytes(32, static_cast<std::uint8_t>(i)), [&](const result<bytes>& sig, batch_proof) {
        if (!sig && sig.error().code() == status_code::tpm_unavailable) ++failed;
      });
  }
  EXPECT_EQ(failed, 20);
}

}  // namespace
}  // namespace agentbus::client
