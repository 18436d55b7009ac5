// requests.hpp — requests waiting for their replies (internal): by message id, each
// completed once, by the reply, by a broker refusal of the request, or by the
// agent's shutdown.
//
// Thread-safe; its mutex is a leaf.
#pragma once

#include <future>
#include <map>
#include <memory>
#include <mutex>

#include "agentbus/agent.hpp"

namespace agentbus::client {

class requests {
 public:
  using waiter = std::shared_ptr<std::promise<result<message>>>;
  // expect registers a waiter for `id` before the request can be answered.
  std::future<result<message>> expect(const bytes& id);
  void forget(const bytes& id);
  // complete hands the waiter of `id` its outcome; false if none waits.
  bool complete(const bytes& id, result<message> outcome);
  // fail_all completes every waiter with `why` (shutdown).
  void fail_all(const status& why);

 private:
  std::mutex mu_;
  std::map<bytes, waiter> waiting_;
};

}  // namespace agentbus::client
