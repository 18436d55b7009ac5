// admin_policy_views.cpp — what the admin protocol shows of the policy itself: the
// role pairs it lets talk (policy_edges, for the trust graph) and its operation
// profiles with what each role got (policy_profiles).
#include <set>
#include <tuple>

#include "admin_protocol.hpp"

namespace agentbus::broker {
namespace {

using json = nlohmann::json;

std::vector<std::string_view> segments(std::string_view pattern) {
  std::vector<std::string_view> out;
  for (;;) {
    std::size_t slash = pattern.find('/');
    out.push_back(pattern.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    pattern.remove_prefix(slash + 1);
  }
}

}  // namespace

std::optional<std::string> topic_patterns_overlap(std::string_view a, std::string_view b) {
  auto sa = segments(a), sb = segments(b);
  std::string out;
  auto append = [&out](std::string_view seg) {
    if (!out.empty()) out += '/';
    out += seg;
  };
  std::size_t i = 0;
  for (; i < sa.size() && i < sb.size(); ++i) {
    // A final ">" matches one or more segments: whatever remains of the other
    // pattern (at least this segment) is then the common part.
    if (sa[i] == ">" || sb[i] == ">") {
      const auto& rest = sa[i] == ">" ? sb : sa;
      for (std::size_t k = i; k < rest.size(); ++k) append(rest[k]);
      return out;
    }
    if (sa[i] == "*") append(sb[i]);
    else if (sb[i] == "*" || sa[i] == sb[i]) append(sa[i]);
    else return std::nullopt;
  }
  // One pattern ended: the topics differ in length (">" would have matched above).
  if (sa.size() != sb.size()) return std::nullopt;
  return out;
}

nlohmann::json policy_edges(const policy& p) {
  std::set<std::tuple<std::string, std::string, std::string, std::string>> seen;
  json out = json::array();
  for (const role_policy& from : p.roles()) {
    for (const role_policy& to : p.roles()) {
      std::vector<std::tuple<std::string, std::string, std::string, std::string>> rows;
      if (p.check_send(from.name, to.name).ok()) rows.emplace_back(from.name, to.name, "send", "");
      for (const auto& pub : from.publish)
        for (const auto& sub : to.subscribe)
          if (auto common = topic_patterns_overlap(pub, sub)) rows.emplace_back(from.name, to.name, "topic", *common);
      for (auto& r : rows) seen.insert(std::move(r));
    }
  }
  for (const auto& [from, to, kind, topic] : seen)
    out.push_back(json{{"from_role", from}, {"to_role", to}, {"kind", kind},
                       {"topic", kind == "topic" ? json(topic) : json(nullptr)}});
  return out;
}

nlohmann::json policy_profiles(const policy& p) {
  auto assurance_list = [](const std::vector<assurance>& v) {
    json out = json::array();
    for (assurance a : v) out.push_back(std::string(assurance_name(a)));
    return out;
  };
  auto rekey = [](std::uint64_t messages, std::chrono::seconds after) {
    return json{{"after_messages", messages > 0 ? json(messages) : json(nullptr)},
                {"after_seconds", after.count() > 0 ? json(after.count()) : json(nullptr)}};
  };
  json profiles = json::array();
  for (const operation_profile& prof : p.profiles()) {
    json users = json::array();
    for (const role_policy& r : p.roles())
      if (r.profile == prof.name) users.push_back(r.name);
    profiles.push_back({{"name", prof.name},
                        {"description", prof.description},
                        {"suite", prof.suite ? json(*prof.suite) : json(nullptr)},
                        {"assurance", prof.accepted_assurance ? assurance_list(*prof.accepted_assurance) : json(nullptr)},
                        {"batch_max_leaves", prof.batch_max_leaves ? json(*prof.batch_max_leaves) : json(nullptr)},
                        {"batch_max_delay_ms", prof.batch_max_delay ? json(prof.batch_max_delay->count()) : json(nullptr)},
                        {"rekey", rekey(prof.rekey_after_messages, prof.rekey_after)},
                        {"roles", std::move(users)}});
  }
  json roles = json::array();
  for (const role_policy& r : p.roles())
    roles.push_back({{"role", r.name},
                     {"profile", r.profile.empty() ? json(nullptr) : json(r.profile)},
                     {"suite", r.suite},
                     {"assurance", assurance_list(r.accepted_assurance)},
                     {"batch_max_leaves", r.batch.max_leaves},
                     {"batch_max_delay_ms", r.batch.max_delay.count()},
                     {"rekey", rekey(r.rekey_after_messages, r.rekey_after)}});
  return json{{"profiles", std::move(profiles)}, {"roles", std::move(roles)}};
}

}  // namespace agentbus::broker
