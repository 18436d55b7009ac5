#include "connections.hpp"

namespace agentbus::broker {

const std::set<std::string, std::less<>>* known_agent::subscriptions() const noexcept {
  if (conn != nullptr) return &conn->subscriptions;
  if (remote()) return &remote_subscriptions;
  return nullptr;
}

void connections::park(known_agent& a) {
  if (a.conn != nullptr || a.offline_ticket != 0) return;
  a.offline_ticket = next_ticket_++;
  offline_.emplace(a.offline_ticket, a.name);
}

void connections::unpark(known_agent& a) {
  if (a.offline_ticket == 0) return;
  offline_.erase(a.offline_ticket);
  a.offline_ticket = 0;
}

known_agent* connections::find(std::string_view name) noexcept {
  auto it = agents_.find(name);
  return it == agents_.end() ? nullptr : &it->second;
}

const known_agent* connections::find(std::string_view name) const noexcept {
  auto it = agents_.find(name);
  return it == agents_.end() ? nullptr : &it->second;
}

known_agent& connections::remember(const std::string& name) {
  known_agent& a = agents_[name];
  a.name = name;
  return a;
}

connection* connections::by_route(const bytes& route) noexcept {
  auto it = routes_.find(route);
  return it == routes_.end() ? nullptr : it->second.get();
}

connection& connections::open(known_agent& a, const bytes& route) {
  if (a.conn && a.conn->route == route) return *a.conn;  // re-enrolment on its own connection: a hop rekey
  if (connection* other = by_route(route)) close(*other->agent);  // the routing id was another agent's
  close(a);  // connected elsewhere before
  if (a.offline_ticket != 0) {
    offline_.erase(a.offline_ticket);
    a.offline_ticket = 0;
  }
  auto c = std::make_unique<connection>();
  c->route = route;
  c->agent = &a;
  a.conn = c.get();
  connection& opened = *routes_.emplace(route, std::move(c)).first->second;
  if (on_open_) on_open_(opened);
  return opened;
}

void connections::close(known_agent& a) {
  if (!a.conn) return;
  // Detached before the hook runs: a send the hook makes that finds this same agent
  // gone (or any nested close) sees it offline already.
  auto it = routes_.find(a.conn->route);
  std::unique_ptr<connection> c = std::move(it->second);
  routes_.erase(it);
  a.conn = nullptr;
  a.offline_ticket = next_ticket_++;
  offline_.emplace(a.offline_ticket, a.name);
  if (on_close_) on_close_(*c);
}

std::size_t connections::forget_offline(std::size_t keep) {
  std::size_t forgotten = 0;
  for (auto it = offline_.begin(); it != offline_.end() && offline_.size() > keep;) {
    auto a = agents_.find(it->second);
    if (a != agents_.end() && a->second.seen_dirty) {
      ++it;  // its deltas go to the registry first
      continue;
    }
    if (a != agents_.end()) agents_.erase(a);
    it = offline_.erase(it);
    ++forgotten;
  }
  return forgotten;
}

}  // namespace agentbus::broker
