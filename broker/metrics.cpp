#include "metrics.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <mutex>
#include <stdexcept>

namespace agentbus::broker {
namespace {

constexpr std::string_view kPrefix = "agentbus_";

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; };
  if (!head(n.front())) return false;
  return std::all_of(n.begin(), n.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

bool valid_label_name(std::string_view n) {
  if (n.empty()) return false;
  auto head = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!head(n.front()) || n.starts_with("__") || n == "le") return false;
  return std::all_of(n.begin(), n.end(), [&](char c) { return head(c) || (c >= '0' && c <= '9'); });
}

const char* kind_name(metric_kind k) {
  switch (k) {
    case metric_kind::counter: return "counter";
    case metric_kind::gauge: return "gauge";
    case metric_kind::histogram: return "histogram";
  }
  return "untyped";
}

// seconds_text renders nanoseconds as exact decimal seconds ("0.0000018", "10"):
// dividing by 1e9 in floating point would print 1.8000000000000001e-06.
std::string seconds_text(std::uint64_t ns) {
  std::string out = std::to_string(ns / 1'000'000'000);
  std::uint64_t frac = ns % 1'000'000'000;
  if (frac == 0) return out;
  std::string digits = std::to_string(frac);
  digits.insert(0, 9 - digits.size(), '0');
  while (digits.back() == '0') digits.pop_back();
  return out + "." + digits;
}

std::string number_text(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

// Text format 0.0.4: label values escape \, " and newline; HELP escapes \ and newline.
void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quote) out += "\\\"";
    else out += c;
  }
}

// label_text is `{name="value"` plus `extra` (already rendered, e.g. le="1") and `}`,
// or empty when there is nothing to put between the braces.
std::string label_text(std::string_view label_name, std::string_view value, std::string_view extra = {}) {
  if (value.empty() && extra.empty()) return {};
  std::string out = "{";
  if (!value.empty()) {
    out += label_name;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
    if (!extra.empty()) out += ',';
  }
  out += extra;
  out += '}';
  return out;
}

}  // namespace

std::chrono::nanoseconds histogram_snapshot::quantile(double q) const noexcept {
  if (count == 0) return std::chrono::nanoseconds{0};
  if (!(q >= 0.0)) q = 0.0;  // also catches NaN
  if (q > 1.0) q = 1.0;
  const double rank = q * static_cast<double>(count);
  std::uint64_t before = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const std::uint64_t in_bucket = buckets[i];
    if (in_bucket == 0) continue;
    if (static_cast<double>(before + in_bucket) >= rank) {
      if (i == kHistogramBoundsNs.size()) return max;  // the overflow bucket has no upper bound
      const double lower = i == 0 ? 0.0 : static_cast<double>(kHistogramBoundsNs[i - 1]);
      const double upper = static_cast<double>(kHistogramBoundsNs[i]);
      const double estimate = lower + (upper - lower) * (rank - static_cast<double>(before)) / static_cast<double>(in_bucket);
      return std::min(std::chrono::nanoseconds{std::llround(estimate)}, max);
    }
    before += in_bucket;
  }
  return max;
}

void histogram::observe(std::chrono::nanoseconds d) noexcept {
  const std::int64_t ns = std::max<std::int64_t>(d.count(), 0);
  // lower_bound finds the first bound >= ns: Prometheus buckets are "less or equal".
  const auto index = static_cast<std::size_t>(
      std::lower_bound(kHistogramBoundsNs.begin(), kHistogramBoundsNs.end(), ns) - kHistogramBoundsNs.begin());
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
  std::int64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

histogram_snapshot histogram::snapshot() const noexcept {
  histogram_snapshot s;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum = std::chrono::nanoseconds{static_cast<std::int64_t>(sum_ns_.load(std::memory_order_relaxed))};
  s.max = std::chrono::nanoseconds{max_ns_.load(std::memory_order_relaxed)};
  return s;
}

metrics::metrics() {
  // Kept in step with broker.cpp's names, so that the exported labels say what they hold.
  describe("envelopes_total", metric_kind::counter, "Envelopes received at publish, by outcome (accepted or the rejection code).", "outcome");
  describe("enrolments_total", metric_kind::counter, "Enrolment handshakes, by outcome.", "outcome");
  describe("subscriptions_total", metric_kind::counter, "Subscription requests, by outcome.", "outcome");
  describe("frames_refused_total", metric_kind::counter, "Frames refused before routing, by reason.", "reason");
  describe("frames_malformed_total", metric_kind::counter, "ZeroMQ messages that were not an agentbus frame.");
  describe("control_total", metric_kind::counter, "Control messages from agents, by operation.", "op");
  describe("control_refused_total", metric_kind::counter, "Control messages from agents refused (nack), by reason.", "reason");
  describe("control_send_failures_total", metric_kind::counter, "Control messages that could not be sent, by reason (overloaded: the agent's queue is full; not_deliverable: its connection is gone).", "reason");
  describe("internal_errors_total", metric_kind::counter, "Unexpected exceptions caught by the event loop.");
  describe("wire_batches_total", metric_kind::counter, "Wire batches received (several envelopes under one hop MAC; each envelope is also counted in envelopes_total).");
  describe("wire_batches_sent_total", metric_kind::counter, "Wire batches sent: the envelopes of one received wire batch for one recipient, under one hop MAC.");
  describe("agents_online", metric_kind::gauge, "Agents currently enrolled and connected.");
  describe("hello_cookies_total", metric_kind::counter, "COOKIE answers to HELLOs without a valid cookie (issued: none; renewed: expired, or for another connection, name or key).", "outcome");
  describe("recipient_queue_full_total", metric_kind::counter, "Sends that found a recipient's queue full (max_queued_bytes_per_agent or send_hwm): the sender was told overloaded.");
  describe("consumers_dropped_total", metric_kind::counter, "Connections closed because nothing was written out to them for drop_stuck_consumer_seconds while bytes waited.");
  describe("transport_admitted_total", metric_kind::counter, "TCP connections the ZAP handler admitted after their CurveZMQ handshake, by what admitted the client key (token, agent, unknown: admit_unknown_keys).", "by");
  describe("transport_refused_total", metric_kind::counter, "TCP connections the ZAP handler refused, by reason (unknown_key; malformed: a request it could not read; error: the registry could not be read).", "reason");
  describe("unauthenticated_connections", metric_kind::gauge, "TCP connections no agent has enrolled over (at the latest sweep).");
  describe("unauthenticated_bytes", metric_kind::gauge, "What those connections may make the broker hold: bytes received on them plus a fixed cost each (bounded by max_unauthenticated_bytes).");
  describe("unauthenticated_connections_closed_total", metric_kind::counter, "Unauthenticated TCP connections closed because together they held more than 3/8 of max_unauthenticated_bytes (the rest is headroom between the guard's sweeps; the largest first, from the source holding the most).");
  describe("agents_known", metric_kind::gauge, "Agent records held in memory: online agents and, at most max_agents, agents gone offline.");
  describe("key_changes_total", metric_kind::counter, "Enrolments of a known name with a new key (a token, the policy pin or an operator approval authorised it); online agents are told.");
  describe("publish_check_seconds", metric_kind::histogram, "Time to check one envelope at publish, by outcome.", "outcome");
}

void metrics::describe(std::string_view name, metric_kind kind, std::string_view help, std::string_view label_name) {
  if (!valid_metric_name(name)) throw std::invalid_argument("metrics: invalid metric name '" + std::string(name) + "'");
  if (!label_name.empty() && !valid_label_name(label_name))
    throw std::invalid_argument("metrics: invalid label name '" + std::string(label_name) + "' for " + std::string(name));
  std::unique_lock lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    families_.emplace(std::string(name), family{kind, std::string(help), std::string(label_name)});
    return;
  }
  if (it->second.kind != kind)
    throw std::logic_error("metrics: '" + std::string(name) + "' is a " + kind_name(it->second.kind) + ", not a " + kind_name(kind));
  it->second.help = help;
  it->second.label_name = label_name;
}

const metrics::family& metrics::family_locked(metric_kind kind, std::string_view name) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    if (!valid_metric_name(name)) throw std::invalid_argument("metrics: invalid metric name '" + std::string(name) + "'");
    it = families_.emplace(std::string(name), family{kind, {}, "label"}).first;
  }
  if (it->second.kind != kind)
    throw std::logic_error("metrics: '" + std::string(name) + "' is a " + kind_name(it->second.kind) + ", not a " + kind_name(kind));
  return it->second;
}

template <class T>
T& metrics::find_or_create(series_map<T>& map, metric_kind kind, std::string_view name, std::string_view label) {
  {
    // Fast path: the series exists. No allocation; the node is stable, so it is
    // safe to use after the lock is released.
    std::shared_lock lock(mu_);
    auto it = map.find(series_less::view{name, label});
    if (it != map.end()) return it->second;
  }
  std::unique_lock lock(mu_);
  family_locked(kind, name);
  return map.try_emplace(series_key{std::string(name), std::string(label)}).first->second;
}

template <class T>
const T* metrics::find(const series_map<T>& map, std::string_view name, std::string_view label) const {
  std::shared_lock lock(mu_);
  auto it = map.find(series_less::view{name, label});
  return it == map.end() ? nullptr : &it->second;
}

counter& metrics::get_counter(std::string_view name, std::string_view label) {
  return find_or_create(counters_, metric_kind::counter, name, label);
}
gauge& metrics::get_gauge(std::string_view name, std::string_view label) {
  return find_or_create(gauges_, metric_kind::gauge, name, label);
}
histogram& metrics::get_histogram(std::string_view name, std::string_view label) {
  return find_or_create(histograms_, metric_kind::histogram, name, label);
}

void metrics::increment(std::string_view name, std::string_view label, std::uint64_t by) { get_counter(name, label).increment(by); }
void metrics::observe(std::string_view name, std::string_view label, std::chrono::nanoseconds d) { get_histogram(name, label).observe(d); }
void metrics::set_gauge(std::string_view name, std::string_view label, double v) { get_gauge(name, label).set(v); }

std::uint64_t metrics::value(std::string_view name, std::string_view label) const {
  const counter* c = find(counters_, name, label);
  return c == nullptr ? 0 : c->value();
}
double metrics::gauge_value(std::string_view name, std::string_view label) const {
  const gauge* g = find(gauges_, name, label);
  return g == nullptr ? 0.0 : g->value();
}
histogram_snapshot metrics::snapshot(std::string_view name, std::string_view label) const {
  const histogram* h = find(histograms_, name, label);
  return h == nullptr ? histogram_snapshot{} : h->snapshot();
}

std::string metrics::to_prometheus_text() const {
  std::string out;
  std::shared_lock lock(mu_);
  // series_of visits the series of one family: they are adjacent in (name, label) order.
  auto series_of = [](const auto& map, const std::string& name, auto&& visit) {
    bool any = false;
    for (auto it = map.lower_bound(series_less::view{name, {}}); it != map.end() && it->first.name == name; ++it) {
      visit(it->first.label, it->second);
      any = true;
    }
    return any;
  };
  for (const auto& entry : families_) {
    // Not a structured binding: lambdas below use them (clang 14, the fuzzing build's
    // compiler, does not capture bindings yet).
    const auto& name = entry.first;
    const auto& fam = entry.second;
    std::string body;
    const std::string full = std::string(kPrefix) + name;
    bool any = false;
    switch (fam.kind) {
      case metric_kind::counter:
        any = series_of(counters_, name, [&](const std::string& label, const counter& c) {
          body += full + label_text(fam.label_name, label) + " " + std::to_string(c.value()) + "\n";
        });
        break;
      case metric_kind::gauge:
        any = series_of(gauges_, name, [&](const std::string& label, const gauge& g) {
          body += full + label_text(fam.label_name, label) + " " + number_text(g.value()) + "\n";
        });
        break;
      case metric_kind::histogram:
        any = series_of(histograms_, name, [&](const std::string& label, const histogram& h) {
          const histogram_snapshot s = h.snapshot();
          std::uint64_t cumulative = 0;
          for (std::size_t i = 0; i < s.buckets.size(); ++i) {
            cumulative += s.buckets[i];
            const std::string le = i < kHistogramBoundsNs.size()
                                       ? seconds_text(static_cast<std::uint64_t>(kHistogramBoundsNs[i]))
                                       : std::string("+Inf");
            body += full + "_bucket" + label_text(fam.label_name, label, "le=\"" + le + "\"") + " " +
                    std::to_string(cumulative) + "\n";
          }
          const std::string labels = label_text(fam.label_name, label);
          body += full + "_sum" + labels + " " + seconds_text(static_cast<std::uint64_t>(s.sum.count())) + "\n";
          body += full + "_count" + labels + " " + std::to_string(s.count) + "\n";
        });
        break;
    }
    if (!any) continue;
    if (!fam.help.empty()) {
      out += "# HELP " + full + " ";
      append_escaped(out, fam.help, false);
      out += "\n";
    }
    out += "# TYPE " + full + " " + kind_name(fam.kind) + "\n";
    out += body;
  }
  return out;
}

std::string metrics::to_json() const {
  using nlohmann::json;
  json counters = json::array(), gauges = json::array(), histograms = json::array();
  std::shared_lock lock(mu_);
  auto labels = [&](const std::string& name, const std::string& value) {
    json l = json::object();
    if (!value.empty()) {
      auto fam = families_.find(name);
      l[fam == families_.end() ? std::string("label") : fam->second.label_name] = value;
    }
    return l;
  };
  for (const auto& [key, c] : counters_)
    counters.push_back({{"name", key.name}, {"labels", labels(key.name, key.label)}, {"value", c.value()}});
  for (const auto& [key, g] : gauges_)
    gauges.push_back({{"name", key.name}, {"labels", labels(key.name, key.label)}, {"value", g.value()}});
  for (const auto& [key, h] : histograms_) {
    const histogram_snapshot s = h.snapshot();
    histograms.push_back({{"name", key.name},
                          {"labels", labels(key.name, key.label)},
                          {"count", s.count},
                          {"sum_ns", s.sum.count()},
                          {"p50_ns", s.p50().count()},
                          {"p99_ns", s.p99().count()},
                          {"max_ns", s.max.count()},
                          {"bucket_counts", s.buckets}});
  }
  json doc = {{"counters", std::move(counters)},
              {"gauges", std::move(gauges)},
              {"histograms", std::move(histograms)},
              {"histogram_bounds_ns", kHistogramBoundsNs}};
  // The replace handler keeps a label value that is not UTF-8 from throwing here.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace agentbus::broker
