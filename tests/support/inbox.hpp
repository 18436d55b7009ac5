// inbox.hpp — what an agent's handlers see, for bus tests (tests only).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"

namespace agentbus::testing {

// inbox records messages and rejections. Its handlers share the state, so an agent
// that outlives the inbox (destruction order in a test) never writes freed memory.
// `messages` and `rejections` are read under `mu` (or after the agent stopped).
struct inbox_state {
  std::mutex mu;
  std::vector<message> messages;
  std::vector<rejection> rejections;
};

struct inbox {
  std::shared_ptr<inbox_state> st = std::make_shared<inbox_state>();
  std::mutex& mu = st->mu;
  std::vector<message>& messages = st->messages;
  std::vector<rejection>& rejections = st->rejections;

  void attach(agent& a) {
    a.on_message(handler());
    a.on_rejected(rejection_recorder());
  }
  message_handler handler() {
    return [s = st](const message& m) {
      std::lock_guard lock(s->mu);
      s->messages.push_back(m);
    };
  }
  rejection_handler rejection_recorder() {
    return [s = st](const rejection& r) {
      std::lock_guard lock(s->mu);
      s->rejections.push_back(r);
    };
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return messages.size();
  }
  std::size_t rejected() {
    std::lock_guard lock(mu);
    return rejections.size();
  }
  bool has_rejection(status_code code, const std::string& where) {
    std::lock_guard lock(mu);
    for (const auto& r : rejections)
      if (r.reason.code() == code && r.where == where) return true;
    return false;
  }
  std::size_t rejections_of(status_code code, const std::string& where) {
    std::lock_guard lock(mu);
    std::size_t n = 0;
    for (const auto& r : rejections) n += r.reason.code() == code && r.where == where ? 1 : 0;
    return n;
  }
  std::string describe() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& r : rejections)
      out += r.where + " (" + r.sender + " -> " + r.recipient + "): " + r.reason.to_string() + "\n";
    return out;
  }
};

}  // namespace agentbus::testing
