// rogue — an agent that misbehaves on purpose (role MONITOR, name rogue-1). It uses
// agentbus_testing's agent_access to send what a correct agent never sends.
//
// It enrols like any agent (its key is genuine), then tries, one at a time:
//   a  wrong-suite     declares rsa3072-pss-sha384 instead of its role's suite
//   b  replay          sends a valid envelope, then the exact same frames again
//   c  tampered        flips a payload byte after the signature was made
//   d  spoofed-sender  claims to be director-1
//   e  acl-topic       publishes on directives/all (MONITOR may not)
//   e2 acl-agent       sends directly to monitor-1 (the shipped policy lets a
//                      MONITOR send to DIRECTOR, SECURITY, ARCHITECT, OPTIMIZER
//                      only). The envelope is sealed for a peer it may talk to
//                      (architect-1, so a session exists) and its header is
//                      redirected before signing: the broker's ACL must stop it.
//                      The recipient must be online (an unknown one is
//                      not_deliverable, checked before the ACL can say anything).
//   f  garbage         an envelope frame whose two parts are random bytes
//   f2 junk-frame      a frame kind the protocol does not have (informational:
//                      the broker answers with an ERR frame, which the library
//                      logs but does not report through on_rejected)
// and waits for the broker's typed refusal of each (on_rejected). Every payload
// of a bad envelope contains "ROGUE-ATTEMPT", so a script can check that none was
// ever delivered. Exit 0 when every counted attempt was refused with an expected
// reason; 1 otherwise (the missing or unexpected ones are listed).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <vector>

#include "agentbus/crypto.hpp"
#include "agentbus/testing/agent_access.hpp"
#include "agentbus/testing/claiming_identity.hpp"
#include "example_agent.hpp"

using namespace agentbus;
using namespace agentbus::examples;

namespace {

struct attempt {
  std::string id;
  std::string label;
  std::string description;
  std::vector<status_code> expected;  // any of these is the right refusal
  bool decoding_error = false;        // expected: any 1xx code (the frames have no message id)
  bool informational = false;         // reported, not counted
  bytes message_id;                   // captured from the header while sealing
  bool sent = false;
  std::string not_sent_reason;
  std::optional<rejection> got;

  bool expects(status_code c) const {
    if (decoding_error) {
      auto v = static_cast<unsigned>(c);
      return v >= 100 && v < 200;
    }
    return std::find(expected.begin(), expected.end(), c) != expected.end();
  }
  std::string expected_text() const {
    if (decoding_error) return "a decoding error (1xx: malformed, ...)";
    std::string s;
    for (auto c : expected) s += (s.empty() ? "" : " or ") + std::string(status_code_name(c));
    return s;
  }
};

class refusal_box {
 public:
  void push(const rejection& r) {
    {
      std::lock_guard lock(mu_);
      pending_.push_back(r);
    }
    cv_.notify_all();
  }
  // match assigns arrived refusals to attempts: by message id, or (attempts whose
  // id is unknown) the first unmatched one expecting that reason. Returns the
  // refusals it could not attribute.
  std::vector<rejection> match(std::vector<attempt>& attempts) {
    std::lock_guard lock(mu_);
    std::vector<rejection> rest;
    for (auto& r : pending_) {
      bool placed = false;
      for (auto& at : attempts) {
        if (at.got || !at.sent) continue;
        bool same_id = !at.message_id.empty() && r.message_id == at.message_id;
        bool idless = at.message_id.empty() && at.expects(r.reason.code());
        if (same_id || idless) {
          at.got = r;
          placed = true;
          break;
        }
      }
      if (!placed) rest.push_back(r);
    }
    pending_.clear();
    return rest;
  }
  void wait(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [&] { return !pending_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<rejection> pending_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string topic = "metrics/cpu";
  std::string forbidden_topic = "directives/all";
  std::string forbidden_agent = "monitor-1";
  std::string via_peer = "architect-1";
  std::string spoof_as = "director-1";
  std::string wrong_suite = "rsa3072-pss-sha384";
  double attempt_timeout = 3, timeout = 20;
  bool claim_tpm = false;
  // --claim-tpm: enrol with a software key declared as a hardware TPM key (no
  // evidence): a role that requires attestation refuses it (not_attested).
  set_identity_wrapper([&claim_tpm](std::shared_ptr<identity_key> key) -> std::shared_ptr<identity_key> {
    if (!claim_tpm) return key;
    return std::make_shared<testing::claiming_identity>(key, testing::claiming_identity::claim_tpm(*key));
  });
  auto extra = [&](CLI::App& app) {
    app.add_flag("--claim-tpm", claim_tpm, "Declare the (software) key a hardware TPM key, with no evidence");
    app.add_option("--topic", topic, "A topic the role may publish (for the valid and the bad envelopes)")->capture_default_str();
    app.add_option("--forbidden-topic", forbidden_topic, "A topic the role may not publish")->capture_default_str();
    app.add_option("--forbidden-agent", forbidden_agent, "An online agent the role may not send to")->capture_default_str();
    app.add_option("--via-peer", via_peer, "An online agent the role may send to (its session seals the e2 attempt)")
        ->capture_default_str();
    app.add_option("--spoof-as", spoof_as, "The sender name to claim")->capture_default_str();
    app.add_option("--wrong-suite", wrong_suite, "The suite to declare")->capture_default_str();
    app.add_option("--attempt-timeout", attempt_timeout, "Seconds to wait for each refusal before the next attempt")
        ->capture_default_str();
    app.add_option("--timeout", timeout, "Overall seconds to wait for all refusals")->capture_default_str();
  };
  return run_example(
      argc, argv, "agentbus example rogue: misbehaves on purpose and prints the broker's typed refusals", "rogue-1",
      "MONITOR", 0, extra, [&](example_agent& a) {
        using namespace std::chrono;
        const auto deadline = steady_clock::now() + duration_cast<steady_clock::duration>(duration<double>(timeout));
        agent& bus = a.bus();
        testing::agent_access::record_sent(bus);  // for the replay attempt
        refusal_box box;
        a.on_rejected([&](const rejection& r) {
          if (r.where == "broker") box.push(r);
        });
        if (wrong_suite == a.key().key_suite().name) wrong_suite = "ecdsa-p384-sha3-384";

        std::vector<attempt> attempts;
        auto add = [&](std::string id, std::string label, std::string desc, std::vector<status_code> expected) -> attempt& {
          attempt at;
          at.id = std::move(id);
          at.label = std::move(label);
          at.description = std::move(desc);
          at.expected = std::move(expected);
          attempts.push_back(std::move(at));
          return attempts.back();
        };
        add("a", "wrong-suite", fmt::format("publish on {} declaring suite {} (role suite {})", topic, wrong_suite,
                                            a.key().key_suite().name),
            {status_code::suite_mismatch});
        add("b", "replay", fmt::format("send a valid envelope on {}, then resend its exact frames", topic),
            {status_code::replayed});
        add("c", "tampered", fmt::format("publish on {} and flip a payload byte after signing", topic),
            {status_code::bad_signature, status_code::bad_mac});
        add("d", "spoofed-sender", fmt::format("publish on {} claiming to be {}", topic, spoof_as),
            {status_code::spoofed_sender});
        add("e", "acl-topic", fmt::format("publish on {} (not in the role's publish list)", forbidden_topic),
            {status_code::acl_denied});
        add("e2", "acl-agent",
            fmt::format("send directly to {} (its role is not in the send_to list; sealed for {}, header redirected)",
                        forbidden_agent, via_peer),
            {status_code::acl_denied});
        add("f", "garbage", "an envelope frame whose signed and auth parts are random bytes", {});
        attempts.back().decoding_error = true;
        add("f2", "junk-frame", "a frame kind the protocol does not have (informational)", {});
        attempts.back().decoding_error = true;
        attempts.back().informational = true;

        // send_one seals with tweaks, capturing the message id from the header.
        auto seal = [&](attempt& at, recipient_kind kind, const std::string& to, const std::string& payload,
                        testing::seal_tweaks tweaks) {
          auto inner = tweaks.edit_header;
          tweaks.edit_header = [&at, inner](envelope_header& h) {
            if (inner) inner(h);
            at.message_id = h.message_id;
          };
          return testing::agent_access::send_tweaked(bus, kind, to, "application/json", as_bytes(payload), tweaks);
        };
        auto payload = [&](const attempt& at) {
          return fmt::format(R"({{"rogue":"ROGUE-ATTEMPT {} {}","ts_ms":{}}})", at.id, at.label, now_ms());
        };
        auto record = [&](attempt& at, const status& st) {
          if (st.ok()) {
            at.sent = true;
            a.say(fmt::format("ATTEMPT {} {}: {} (id {})", at.id, at.label, at.description, short_id(at.message_id)));
          } else {
            at.not_sent_reason = st.to_string();
            a.say(fmt::format("ATTEMPT {} {}: NOT SENT, refused locally: {}", at.id, at.label, at.not_sent_reason));
          }
        };
        auto await = [&](attempt& at) {
          if (!at.sent) return;
          double wait_s = at.informational ? std::min(attempt_timeout, 1.5) : attempt_timeout;
          auto end = std::min(deadline, steady_clock::now() + duration_cast<steady_clock::duration>(duration<double>(wait_s)));
          while (!at.got && steady_clock::now() < end && !stop_requested()) {
            box.wait(milliseconds(50));
            for (auto& r : box.match(attempts))
              a.say(fmt::format("UNATTRIBUTED refusal: {} (id {})", r.reason.to_string(), short_id(r.message_id)));
          }
          if (at.got)
            a.say(fmt::format("RESULT {} {}: refused as {}{}", at.id, at.label, status_code_name(at.got->reason.code()),
                              at.expects(at.got->reason.code()) ? " (expected)" : " (UNEXPECTED: expected " + at.expected_text() + ")"));
        };

        for (auto& at : attempts) {
          if (stop_requested()) break;
          if (at.id == "a") {
            testing::seal_tweaks t;
            t.edit_header = [&](envelope_header& h) { h.suite = wrong_suite; };
            record(at, seal(at, recipient_kind::topic, topic, payload(at), t));
          } else if (at.id == "b") {
            // The valid envelope first, through the normal API (with end-to-end
            // MACs for every subscriber): it must be delivered, not refused. Its
            // message id is not visible here, so the replay's refusal is matched
            // by its reason.
            std::string ok_payload = fmt::format(R"({{"rogue":"rogue-valid sample before the replay","ts_ms":{}}})", now_ms());
            status st = bus.publish(topic, "application/json", as_bytes(ok_payload));
            if (!a.check(st, "valid envelope before the replay")) {
              at.not_sent_reason = "the valid envelope could not be sent: " + st.to_string();
              continue;
            }
            a.say(fmt::format("SENT valid envelope on {}: {}", topic, ok_payload));
            at.message_id.clear();
            record(at, testing::agent_access::resend_last(bus));
          } else if (at.id == "c") {
            testing::seal_tweaks t;
            t.edit_after_signing = [](bytes& signed_part) {
              // The payload is the last field of the signed part: flip a byte
              // near its end (a digit of ts_ms, so it stays printable).
              if (signed_part.size() >= 3) signed_part[signed_part.size() - 3] ^= 0x01;
            };
            record(at, seal(at, recipient_kind::topic, topic, payload(at), t));
          } else if (at.id == "d") {
            testing::seal_tweaks t;
            t.edit_header = [&](envelope_header& h) { h.sender = spoof_as; };
            record(at, seal(at, recipient_kind::topic, topic, payload(at), t));
          } else if (at.id == "e") {
            record(at, seal(at, recipient_kind::topic, forbidden_topic, payload(at), {}));
          } else if (at.id == "e2") {
            testing::seal_tweaks t;
            std::string target = forbidden_agent;
            t.edit_header = [target](envelope_header& h) { h.to = target; };
            record(at, seal(at, recipient_kind::agent, via_peer, payload(at), t));
          } else if (at.id == "f" || at.id == "f2") {
            // "ENV" is the transport's frame kind for an envelope (frame 0 on the
            // agent's connection, before the signed and auth parts).
            bytes junk = crypto::random_bytes(37);
            junk[0] = 0xc1;  // a byte MessagePack never uses
            std::string text = "ROGUE-ATTEMPT " + at.id + " " + at.label;
            std::vector<bytes> frames;
            if (at.id == "f")
              frames = {bytes{'E', 'N', 'V'}, junk, bytes(text.begin(), text.end())};
            else
              frames = {junk, bytes(text.begin(), text.end())};
            at.message_id.clear();
            record(at, testing::agent_access::send_frames(bus, frames));
          }
          await(at);
        }

        // Late refusals: keep matching until everything arrived or the deadline.
        auto all_in = [&] {
          return std::all_of(attempts.begin(), attempts.end(),
                             [](const attempt& at) { return !at.sent || at.got || at.informational; });
        };
        while (!all_in() && steady_clock::now() < deadline && !stop_requested()) {
          box.wait(milliseconds(100));
          for (auto& r : box.match(attempts))
            a.say(fmt::format("UNATTRIBUTED refusal: {} (id {})", r.reason.to_string(), short_id(r.message_id)));
        }

        int good = 0;
        std::vector<std::string> problems;
        int counted = 0;
        for (const auto& at : attempts) {
          if (at.informational) {
            a.say(fmt::format("NOTE {} {} (informational, not counted): {}", at.id, at.label,
                              at.got ? "refused as " + std::string(status_code_name(at.got->reason.code()))
                                     : std::string("no typed refusal reached on_rejected")));
            continue;
          }
          ++counted;
          if (!at.sent)
            problems.push_back(fmt::format("{} {}: not sent ({})", at.id, at.label, at.not_sent_reason));
          else if (!at.got)
            problems.push_back(fmt::format("{} {}: MISSING refusal (expected {})", at.id, at.label, at.expected_text()));
          else if (!at.expects(at.got->reason.code()))
            problems.push_back(fmt::format("{} {}: refused as {} but expected {}", at.id, at.label,
                                           status_code_name(at.got->reason.code()), at.expected_text()));
          else
            ++good;
        }
        a.say(fmt::format("SUMMARY {}/{} attempts refused by the broker as expected", good, counted));
        for (const auto& p : problems) a.say("PROBLEM " + p);
        return problems.empty() && a.failures() == 0 ? kExitOk : kExitFailed;
      });
}
