#include "connections.hpp"

namespace agentbus::broker {

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
  auto c = std::make_unique<connection>();
  c->route = route;
  c->agent = &a;
  a.conn = c.get();
  return *routes_.emplace(route, std::move(c)).first->second;
}

void connections::close(known_agent& a) {
  if (!a.conn) return;
  // Detached before the hook runs: a send the hook makes that finds this same agent
  // gone (or any nested close) sees it offline already.
  auto it = routes_.find(a.conn->route);
  std::unique_ptr<connection> c = std::move(it->second);
  routes_.erase(it);
  a.conn = nullptr;
  if (on_close_) on_close_(*c);
}

}  // namespace agentbus::broker
