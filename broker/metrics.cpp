#include "metrics.hpp"

#include "agentbus/version.hpp"

#include <nlohmann/json.hpp>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <limits>
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
  for (const catalogue_entry& e : kMetricCatalogue) {
    describe(e.name, e.kind, e.help, e.label_name);
    const metric_name name = metric_name::described(e.name);
    auto create = [&](std::string_view label) {
      switch (e.kind) {
        case metric_kind::counter: get_counter(name, label); break;
        case metric_kind::gauge: get_gauge(name, label); break;
        case metric_kind::histogram: get_histogram(name, label); break;
      }
    };
    if (e.label_name.empty()) create({});
    for (std::string_view v : e.preload) create(v);
  }
}

void metrics::describe(std::string_view name, metric_kind kind, std::string_view help, std::string_view label_name) {
  if (!valid_metric_name(name)) throw std::invalid_argument("metrics: invalid metric name '" + std::string(name) + "'");
  // prometheus-cpp 1.0 writes HELP as it is: a newline would end the comment and a
  // backslash start an escape. Our HELP texts are constants; keep them plain.
  if (help.find_first_of("\n\\") != std::string_view::npos)
    throw std::invalid_argument("metrics: HELP of " + std::string(name) + " has a newline or a backslash");
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
  if (it == families_.end())
    throw std::logic_error("metrics: '" + std::string(name) + "' was not described (metrics_catalogue.hpp)");
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

counter& metrics::get_counter(metric_name name, std::string_view label) {
  return find_or_create(counters_, metric_kind::counter, name.view(), label);
}
gauge& metrics::get_gauge(metric_name name, std::string_view label) {
  return find_or_create(gauges_, metric_kind::gauge, name.view(), label);
}
histogram& metrics::get_histogram(metric_name name, std::string_view label) {
  return find_or_create(histograms_, metric_kind::histogram, name.view(), label);
}

void metrics::increment(metric_name name, std::string_view label, std::uint64_t by) { get_counter(name, label).increment(by); }
void metrics::observe(metric_name name, std::string_view label, std::chrono::nanoseconds d) { get_histogram(name, label).observe(d); }
void metrics::set_gauge(metric_name name, std::string_view label, double v) { get_gauge(name, label).set(v); }

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

void metrics::set_tpm_source(std::function<std::vector<tpm::tpm_op_stats>()> source) {
  std::lock_guard lock(tpm_source_mu_);
  tpm_source_ = std::move(source);
}

std::vector<tpm::tpm_op_stats> metrics::tpm_stats() const {
  std::function<std::vector<tpm::tpm_op_stats>()> source;
  {
    std::lock_guard lock(tpm_source_mu_);
    source = tpm_source_;
  }
  return source ? source() : std::vector<tpm::tpm_op_stats>{};
}

namespace {

prometheus::MetricType type_of(metric_kind k) {
  switch (k) {
    case metric_kind::counter: return prometheus::MetricType::Counter;
    case metric_kind::gauge: return prometheus::MetricType::Gauge;
    case metric_kind::histogram: return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

prometheus::ClientMetric labelled(std::string_view label_name, std::string_view value) {
  prometheus::ClientMetric m;
  if (!value.empty()) m.label.push_back({std::string(label_name), std::string(value)});
  return m;
}

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// tpm_families renders the TPM's statistics: a histogram of durations and a counter
// of failures, one series per operation.
void add_tpm_families(std::vector<prometheus::MetricFamily>& out, const std::vector<tpm::tpm_op_stats>& ops) {
  prometheus::MetricFamily durations{std::string(kPrefix) + std::string(kTpmDurationName), std::string(kTpmDurationHelp),
                                     prometheus::MetricType::Histogram, {}};
  prometheus::MetricFamily failures{std::string(kPrefix) + std::string(kTpmFailuresName), std::string(kTpmFailuresHelp),
                                    prometheus::MetricType::Counter, {}};
  for (const tpm::tpm_op_stats& op : ops) {
    prometheus::ClientMetric h = labelled("operation", op.operation);
    h.histogram.sample_count = op.count;
    h.histogram.sample_sum = seconds(op.total_time);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < op.latency_buckets.size(); ++i) {
      cumulative += op.latency_buckets[i];
      h.histogram.bucket.push_back({cumulative, i < tpm::tpm_latency_bounds.size()
                                                    ? seconds(tpm::tpm_latency_bounds[i])
                                                    : std::numeric_limits<double>::infinity()});
    }
    durations.metric.push_back(std::move(h));
    prometheus::ClientMetric f = labelled("operation", op.operation);
    f.counter.value = static_cast<double>(op.failures);
    failures.metric.push_back(std::move(f));
  }
  out.push_back(std::move(failures));
  out.push_back(std::move(durations));
}

}  // namespace

std::vector<prometheus::MetricFamily> metrics::collect() const {
  std::vector<prometheus::MetricFamily> out;
  {
    std::shared_lock lock(mu_);
    out.reserve(families_.size() + 3);
    // series_of visits the series of one family: they are adjacent in (name, label) order.
    auto series_of = [](const auto& map, const std::string& name, auto&& visit) {
      for (auto it = map.lower_bound(series_less::view{name, {}}); it != map.end() && it->first.name == name; ++it)
        visit(it->first.label, it->second);
    };
    for (const auto& entry : families_) {
      // Not a structured binding: lambdas below use them (clang 14, the fuzzing build's
      // compiler, does not capture bindings yet).
      const auto& name = entry.first;
      const auto& fam = entry.second;
      prometheus::MetricFamily f{std::string(kPrefix) + name, fam.help, type_of(fam.kind), {}};
      switch (fam.kind) {
        case metric_kind::counter:
          series_of(counters_, name, [&](const std::string& label, const counter& c) {
            prometheus::ClientMetric m = labelled(fam.label_name, label);
            m.counter.value = static_cast<double>(c.value());
            f.metric.push_back(std::move(m));
          });
          break;
        case metric_kind::gauge:
          series_of(gauges_, name, [&](const std::string& label, const gauge& g) {
            prometheus::ClientMetric m = labelled(fam.label_name, label);
            m.gauge.value = g.value();
            f.metric.push_back(std::move(m));
          });
          break;
        case metric_kind::histogram:
          series_of(histograms_, name, [&](const std::string& label, const histogram& h) {
            const histogram_snapshot s = h.snapshot();
            prometheus::ClientMetric m = labelled(fam.label_name, label);
            m.histogram.sample_count = s.count;
            m.histogram.sample_sum = seconds(s.sum);
            std::uint64_t cumulative = 0;
            for (std::size_t i = 0; i < s.buckets.size(); ++i) {
              cumulative += s.buckets[i];
              m.histogram.bucket.push_back({cumulative, i < kHistogramBoundsNs.size()
                                                            ? static_cast<double>(kHistogramBoundsNs[i]) / 1e9
                                                            : std::numeric_limits<double>::infinity()});
            }
            f.metric.push_back(std::move(m));
          });
          break;
      }
      out.push_back(std::move(f));
    }
  }
  add_tpm_families(out, tpm_stats());
  prometheus::MetricFamily build{std::string(kPrefix) + std::string(kBuildInfoName), std::string(kBuildInfoHelp),
                                 prometheus::MetricType::Gauge, {}};
  prometheus::ClientMetric info = labelled("version", AGENTBUS_VERSION);
  info.gauge.value = 1;
  build.metric.push_back(std::move(info));
  out.push_back(std::move(build));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string metrics::to_prometheus_text() const { return prometheus::TextSerializer().Serialize(collect()); }

std::string metrics::to_json() const {
  using nlohmann::json;
  json counters = json::array(), gauges = json::array(), histograms = json::array();
  std::shared_lock lock(mu_);
  auto labels = [&](const std::string& name, const std::string& value) {
    json l = json::object();
    if (!value.empty()) {
      auto fam = families_.find(name);
      l[fam->second.label_name] = value;  // every series belongs to a described family
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
  lock.unlock();
  json tpm_ops = json::array();
  for (const tpm::tpm_op_stats& op : tpm_stats())
    tpm_ops.push_back({{"operation", op.operation}, {"count", op.count}, {"failures", op.failures},
                       {"total_ns", op.total_time.count()}});
  json doc = {{"counters", std::move(counters)},
              {"gauges", std::move(gauges)},
              {"histograms", std::move(histograms)},
              {"histogram_bounds_ns", kHistogramBoundsNs},
              {"tpm", std::move(tpm_ops)}};
  // The replace handler keeps a label value that is not UTF-8 from throwing here.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace agentbus::broker
