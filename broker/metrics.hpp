// metrics.hpp — the broker's counters, gauges and latency histograms, collected for
// prometheus-cpp (served over HTTP by metrics_http.hpp, and as text on the admin
// endpoint) and rendered as JSON for the admin "stats" command.
//
// A series is a metric name plus at most one label value; the label's name belongs
// to the metric (metrics_catalogue.hpp), so the hot path passes only the value:
// increment("envelopes_total", "bad_mac") exports
// agentbus_envelopes_total{outcome="bad_mac"}. An empty label value is the series
// without labels.
//
// Why our own registry rather than prometheus-cpp's Family<Counter>: the hot path
// (every envelope) updates a histogram and a counter, and prometheus-cpp's Histogram
// takes a mutex per observation; ours are relaxed atomics. prometheus-cpp does what
// it is good at here: the exposition format and the HTTP exposer.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <functional>
#include <utility>
#include <vector>

#include "agentbus/tpm.hpp"
#include "metrics_catalogue.hpp"

namespace prometheus {
struct MetricFamily;
}

namespace agentbus::broker {

// counter is a monotonic 64-bit count. Lock-free and thread-safe.
class counter {
 public:
  void increment(std::uint64_t by = 1) noexcept { value_.fetch_add(by, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// gauge holds the last value set. Lock-free and thread-safe.
class gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// kHistogramBoundsNs are the upper bounds (inclusive, Prometheus "le") of the latency
// buckets: 1 µs to 10 s, four per decade at 1, 1.8, 3.2 and 5.6 (rounded 10^(k/4),
// so that the exported "le" values are short decimals). One more bucket counts
// what exceeds 10 s.
inline constexpr std::array<std::int64_t, 29> kHistogramBoundsNs = {
    1'000,          1'800,          3'200,          5'600,                            // 1 µs
    10'000,         18'000,         32'000,         56'000,                           // 10 µs
    100'000,        180'000,        320'000,        560'000,                          // 100 µs
    1'000'000,      1'800'000,      3'200'000,      5'600'000,                        // 1 ms
    10'000'000,     18'000'000,     32'000'000,     56'000'000,                       // 10 ms
    100'000'000,    180'000'000,    320'000'000,    560'000'000,                      // 100 ms
    1'000'000'000,  1'800'000'000,  3'200'000'000,  5'600'000'000,  10'000'000'000};  // 1 s .. 10 s
inline constexpr std::size_t kHistogramBuckets = kHistogramBoundsNs.size() + 1;

// histogram_snapshot is a copy of one histogram. buckets[i] counts observations in
// (bound[i-1], bound[i]] (not cumulative); buckets.back() counts those above 10 s.
// count is the sum of the buckets. Taken while writers run, sum and max may include
// an observation the buckets do not yet show (each field is read atomically, the
// whole is not).
struct histogram_snapshot {
  std::uint64_t count = 0;
  std::chrono::nanoseconds sum{0};
  std::chrono::nanoseconds max{0};
  std::array<std::uint64_t, kHistogramBuckets> buckets{};

  // quantile estimates the q-quantile (q in [0, 1]) by linear interpolation inside
  // the bucket that holds it (as Prometheus' histogram_quantile does), never above
  // max; zero when empty. The estimate lies in the bucket of the true quantile, so
  // it is off by at most that bucket's width (a factor of 1.8 at worst).
  std::chrono::nanoseconds quantile(double q) const noexcept;
  std::chrono::nanoseconds p50() const noexcept { return quantile(0.50); }
  std::chrono::nanoseconds p99() const noexcept { return quantile(0.99); }
};

// histogram counts durations into kHistogramBoundsNs buckets. Lock-free and
// thread-safe: observe() is one binary search over 29 bounds and three relaxed
// atomic adds (plus a compare-exchange when it sets a new maximum).
class histogram {
 public:
  void observe(std::chrono::nanoseconds d) noexcept;  // negative durations count as 0
  histogram_snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kHistogramBuckets> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::int64_t> max_ns_{0};
};

// metrics is the broker's registry. Thread-safety: every member function may be
// called from any thread at any time. Series are created on first use and never
// removed, so the references returned by get_counter/get_gauge/get_histogram stay
// valid for the registry's lifetime, and updating through them takes no lock.
//
// Errors (programming errors, thrown from the slow path that creates a series):
// std::invalid_argument for a name that is not [a-zA-Z_:][a-zA-Z0-9_:]*, and
// std::logic_error when a name is used as two kinds (a counter and a histogram).
class metrics {
 public:
  // The constructor describes kMetricCatalogue and creates each entry's series for
  // its preloaded label values (the unlabelled ones: their one series).
  metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  // describe sets a metric's kind, HELP text and label name ([a-zA-Z_][a-zA-Z0-9_]*,
  // not "le"; empty for an unlabelled metric), for names outside the catalogue
  // (tests). Calling it again replaces help and label name but may not change the kind.
  void describe(std::string_view name, metric_kind kind, std::string_view help, std::string_view label_name = {});

  // increment adds `by` to a counter. After the first call for a (name, label) pair it
  // allocates nothing: a shared (reader) lock and a map lookup with string_view keys.
  // Writing to a metric that was not described throws std::logic_error.
  void increment(metric_name name, std::string_view label_value = {}, std::uint64_t by = 1);
  // observe records a duration in a histogram (exported in seconds: name it *_seconds).
  void observe(metric_name name, std::string_view label_value, std::chrono::nanoseconds d);
  void set_gauge(metric_name name, std::string_view label_value, double v);

  // get_* return the series, creating it. Cache the reference on the hottest paths.
  counter& get_counter(metric_name name, std::string_view label_value = {});
  gauge& get_gauge(metric_name name, std::string_view label_value = {});
  histogram& get_histogram(metric_name name, std::string_view label_value = {});

  // value, gauge_value and histogram_snapshot read a series; 0 / empty if it does not exist.
  std::uint64_t value(std::string_view name, std::string_view label_value = {}) const;
  double gauge_value(std::string_view name, std::string_view label_value = {}) const;
  histogram_snapshot snapshot(std::string_view name, std::string_view label_value = {}) const;

  // set_tpm_source names where the broker's TPM statistics come from (tpm::stats());
  // collect() and to_json() call it at each scrape. Without one the TPM families are
  // exported empty.
  void set_tpm_source(std::function<std::vector<tpm::tpm_op_stats>()> source);

  // collect returns every family for prometheus-cpp, in name order, names prefixed
  // "agentbus_": every described family (with no samples if none of its series exists
  // yet), histograms in seconds with cumulative buckets, the TPM families and
  // build_info. Thread-safe (scrapes run on the HTTP server's threads).
  std::vector<prometheus::MetricFamily> collect() const;
  // to_prometheus_text is collect() in the text exposition format (0.0.4), rendered by
  // prometheus-cpp's TextSerializer: the admin endpoint's "metrics" answer.
  std::string to_prometheus_text() const;

  // to_json renders {"counters":[{"name","labels":{..},"value"}],
  // "gauges":[{"name","labels","value"}], "histograms":[{"name","labels","count",
  // "sum_ns","p50_ns","p99_ns","max_ns","bucket_counts":[30 per-bucket counts]}],
  // "histogram_bounds_ns":[29 bounds], "tpm":[{"operation","count","failures",
  // "total_ns"}]}. Names carry no "agentbus_" prefix.
  std::string to_json() const;

 private:
  struct series_key {
    std::string name;
    std::string label;
  };
  // series_less orders by (name, label) and compares a stored key with a pair of
  // string_views, so that lookups build no std::string.
  struct series_less {
    using is_transparent = void;
    using view = std::pair<std::string_view, std::string_view>;
    static view as_view(const series_key& k) noexcept { return {k.name, k.label}; }
    static view as_view(const view& v) noexcept { return v; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept { return as_view(a) < as_view(b); }
  };
  struct family {
    metric_kind kind;
    std::string help;
    std::string label_name;
  };
  template <class T>
  using series_map = std::map<series_key, T, series_less>;

  template <class T>
  T& find_or_create(series_map<T>& map, metric_kind kind, std::string_view name, std::string_view label);
  template <class T>
  const T* find(const series_map<T>& map, std::string_view name, std::string_view label) const;
  const family& family_locked(metric_kind kind, std::string_view name);  // mu_ held exclusively
  std::vector<tpm::tpm_op_stats> tpm_stats() const;

  // Why one std::shared_mutex over ordered maps rather than sharding: the broker
  // has a few dozen series, so a lookup is about five short string compares; the
  // reader lock is uncontended on the single event-loop thread, and std::map nodes
  // never move, so a found series is updated with atomics after the lock is
  // released. Threads that update one series very often should hold its reference
  // (get_counter) and skip the map altogether. Ordered maps also give the
  // exporters their (name, label) order for free.
  mutable std::shared_mutex mu_;
  std::map<std::string, family, std::less<>> families_;
  series_map<counter> counters_;
  series_map<gauge> gauges_;
  series_map<histogram> histograms_;
  mutable std::mutex tpm_source_mu_;
  std::function<std::vector<tpm::tpm_op_stats>()> tpm_source_;
};

}  // namespace agentbus::broker
