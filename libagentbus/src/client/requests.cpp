#include "client/requests.hpp"

namespace agentbus::client {

std::future<result<message>> requests::expect(const bytes& id) {
  auto w = std::make_shared<std::promise<result<message>>>();
  auto f = w->get_future();
  std::lock_guard lock(mu_);
  waiting_[id] = std::move(w);
  return f;
}

void requests::forget(const bytes& id) {
  std::lock_guard lock(mu_);
  waiting_.erase(id);
}

bool requests::complete(const bytes& id, result<message> outcome) {
  waiter w;
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return false;
    w = std::move(it->second);
    waiting_.erase(it);
  }
  w->set_value(std::move(outcome));
  return true;
}

void requests::fail_all(const status& why) {
  std::map<bytes, waiter> all;
  {
    std::lock_guard lock(mu_);
    all.swap(waiting_);
  }
  for (auto& [id, w] : all) w->set_value(why);
}

}  // namespace agentbus::client
