// inbox.hpp — what an agent's handlers see, for bus tests (tests only).
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agentbus/agent.hpp"

namespace agentbus::testing {

// inbox records messages and rejections. Its handlers share the state, so an agent
// that outlives the inbox (destruction order in a test) never writes freed memory.
class inbox {
 public:
  void attach(agent& a) {
    a.on_message(handler());
    a.on_rejected(rejection_recorder());
  }
  message_handler handler() {
    return [s = st_](const message& m) {
      std::lock_guard lock(s->mu);
      s->messages.push_back(m);
    };
  }
  rejection_handler rejection_recorder() {
    return [s = st_](const rejection& r) {
      std::lock_guard lock(s->mu);
      s->rejections.push_back(r);
    };
  }
  std::size_t count() const {
    std::lock_guard lock(st_->mu);
    return st_->messages.size();
  }
  std::size_t rejected() const {
    std::lock_guard lock(st_->mu);
    return st_->rejections.size();
  }
  std::vector<message> messages() const {
    std::lock_guard lock(st_->mu);
    return st_->messages;
  }
  std::vector<rejection> rejections() const {
    std::lock_guard lock(st_->mu);
    return st_->rejections;
  }
  bool has_rejection(status_code code, const std::string& where) const {
    std::lock_guard lock(st_->mu);
    for (const auto& r : st_->rejections)
      if (r.reason.code() == code && r.where == where) return true;
    return false;
  }
  std::string describe() const {
    std::lock_guard lock(st_->mu);
    std::string out;
    for (const auto& r : st_->rejections)
      out += r.where + " (" + r.sender + " -> " + r.recipient + "): " + r.reason.to_string() + "\n";
    return out;
  }

 private:
  struct state {
    std::mutex mu;
    std::vector<message> messages;
    std::vector<rejection> rejections;
  };
  std::shared_ptr<state> st_ = std::make_shared<state>();
};

}  // namespace agentbus::testing
