// metrics_test.cpp — the broker's metrics registry (counters, gauges, histograms and
// their Prometheus and JSON renderings) and its log formatters (logging.hpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "logging.hpp"
#include "metrics.hpp"

namespace agentbus::broker {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// has_shape matches `s` against `shape`, where 'd' stands for any digit and every
// other character for itself. (std::regex trips GCC 12's -Wmaybe-uninitialized in
// the sanitizer build, so these tests parse by hand.)
bool has_shape(std::string_view s, std::string_view shape) {
  if (s.size() != shape.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i]) return false;
  }
  return true;
}

// ---------------------------------------------------------------- counters

TEST(Metrics, CountersAddPerLabel) {
  metrics m;
  EXPECT_EQ(m.value("envelopes_total", "accepted"), 0u);  // reading creates nothing
  m.increment("envelopes_total", "accepted");
  m.increment("envelopes_total", "accepted");
  m.increment("envelopes_total", "bad_mac", 5);
  m.increment("frames_malformed_total");
  EXPECT_EQ(m.value("envelopes_total", "accepted"), 2u);
  EXPECT_EQ(m.value("envelopes_total", "bad_mac"), 5u);
  EXPECT_EQ(m.value("envelopes_total"), 0u);
  EXPECT_EQ(m.value("frames_malformed_total"), 1u);
  EXPECT_EQ(m.value("no_such_total"), 0u);
}

// dyn names a metric described at run time (metric_name's literals must be in the catalogue).
metric_name dyn(std::string_view name) { return metric_name::described(name); }

TEST(Metrics, ReferencesAreStableAndShareTheSeries) {
  metrics m;
  counter& c = m.get_counter("envelopes_total", "accepted");
  m.describe("other_total", metric_kind::counter, "Others.", "n");
  for (int i = 0; i < 100; ++i) m.increment(dyn("other_total"), std::to_string(i));  // grow the map
  EXPECT_EQ(&c, &m.get_counter("envelopes_total", "accepted"));
  c.increment(3);
  m.increment("envelopes_total", "accepted");
  EXPECT_EQ(m.value("envelopes_total", "accepted"), 4u);
  EXPECT_EQ(c.value(), 4u);
}

TEST(Metrics, MisuseIsAProgrammingError) {
  metrics m;
  // A name in the broker's code that is not in the catalogue does not compile
  // (metric_name is consteval); at run time an undescribed name is refused.
  EXPECT_THROW(m.increment(dyn("things_total")), std::logic_error);
  EXPECT_THROW(m.get_gauge(dyn("label_total")), std::logic_error);
  m.describe("things_total", metric_kind::counter, "Things.");
  m.increment(dyn("things_total"));
  EXPECT_THROW(m.set_gauge(dyn("things_total"), "", 1.0), std::logic_error);
  EXPECT_THROW(m.observe("envelopes_total", "x", 1ms), std::logic_error);  // described as a counter
  EXPECT_THROW(m.describe("bad name", metric_kind::counter, ""), std::invalid_argument);
  EXPECT_THROW(m.describe("9lives_total", metric_kind::counter, ""), std::invalid_argument);
  EXPECT_THROW(m.describe("", metric_kind::counter, ""), std::invalid_argument);
  EXPECT_THROW(m.describe("x_total", metric_kind::counter, "", "le"), std::invalid_argument);
  EXPECT_THROW(m.describe("x_total", metric_kind::counter, "", "__reserved"), std::invalid_argument);
  EXPECT_THROW(m.describe("x_total", metric_kind::counter, "", "two words"), std::invalid_argument);
  EXPECT_THROW(m.describe("things_total", metric_kind::histogram, ""), std::logic_error);
  EXPECT_NO_THROW(m.describe("things_total", metric_kind::counter, "Things.", "kind"));
}

TEST(Metrics, Gauges) {
  metrics m;
  EXPECT_EQ(m.gauge_value("agents_online"), 0.0);
  m.set_gauge("agents_online", "", 3);
  m.set_gauge("agents_online", "", 2);
  m.describe("queue_depth", metric_kind::gauge, "Depth.", "transport");
  m.set_gauge(dyn("queue_depth"), "tcp", 1.5);
  EXPECT_EQ(m.gauge_value("agents_online"), 2.0);
  EXPECT_EQ(m.gauge_value("queue_depth", "tcp"), 1.5);
  const std::string text = m.to_prometheus_text();
  EXPECT_NE(text.find("\n# TYPE agentbus_agents_online gauge\nagentbus_agents_online 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("agentbus_queue_depth{transport=\"tcp\"} 1.5\n"), std::string::npos) << text;
  m.set_gauge(dyn("queue_depth"), "tcp", std::nan(""));
  m.set_gauge(dyn("queue_depth"), "udp", -INFINITY);
  const std::string special = m.to_prometheus_text();
  EXPECT_NE(special.find("agentbus_queue_depth{transport=\"tcp\"} Nan\n"), std::string::npos) << special;
  EXPECT_NE(special.find("agentbus_queue_depth{transport=\"udp\"} -Inf\n"), std::string::npos) << special;
}

// ---------------------------------------------------------------- histograms

TEST(Histogram, BucketsAreLogScaleAndInclusive) {
  EXPECT_EQ(kHistogramBoundsNs.front(), 1'000);
  EXPECT_EQ(kHistogramBoundsNs.back(), 10'000'000'000);
  for (std::size_t i = 4; i < kHistogramBoundsNs.size(); ++i) EXPECT_EQ(kHistogramBoundsNs[i], 10 * kHistogramBoundsNs[i - 4]);

  histogram h;
  h.observe(1000ns);    // le 1 µs
  h.observe(1001ns);    // le 1.8 µs
  h.observe(-5ns);      // counted as 0
  h.observe(10s);       // le 10 s
  h.observe(11s);       // above every bound
  const histogram_snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.buckets[0], 2u);
  EXPECT_EQ(s.buckets[1], 1u);
  EXPECT_EQ(s.buckets[kHistogramBuckets - 2], 1u);
  EXPECT_EQ(s.buckets[kHistogramBuckets - 1], 1u);
  EXPECT_EQ(s.max, 11s);
  EXPECT_EQ(s.sum, 21s + 2001ns);
  EXPECT_EQ(s.quantile(1.0), 11s);  // the overflow bucket answers with the maximum
}

TEST(Histogram, QuantilesOfKnownData) {
  histogram h;
  for (int us = 1; us <= 100; ++us) h.observe(std::chrono::microseconds(us));
  const histogram_snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.sum, 5050us);
  EXPECT_EQ(s.max, 100us);
  // Uniform data inside each bucket: interpolation is exact.
  // p50: rank 50 lies in (32 µs, 56 µs] which holds 33..56 after 32 values.
  EXPECT_EQ(s.p50(), 50us);
  EXPECT_EQ(s.p99(), 99us);
  EXPECT_EQ(s.quantile(1.0), 100us);
  EXPECT_EQ(s.quantile(0.0), 0us);  // the lower edge of the first bucket
  EXPECT_EQ(s.quantile(2.0), 100us);  // clamped
  EXPECT_EQ(s.quantile(std::nan("")), 0us);

  EXPECT_EQ(histogram_snapshot{}.p99(), 0ns);

  // A single slow outlier moves p99 only as far as the maximum allows.
  histogram skewed;
  for (int i = 0; i < 99; ++i) skewed.observe(2ms);
  skewed.observe(3s);
  const histogram_snapshot k = skewed.snapshot();
  // 2 ms lies in (1.8 ms, 3.2 ms]: the estimates stay inside that bucket, within
  // the documented factor of 1.8 of the true value.
  EXPECT_GT(k.p50(), 1800us);
  EXPECT_LE(k.p50(), 3200us);
  EXPECT_LE(k.p99(), 3200us);
  EXPECT_LT(k.p99(), 2ms * 1.8);
  EXPECT_EQ(k.max, 3s);
}

TEST(Histogram, RegistryObserveAndSnapshot) {
  metrics m;
  m.observe("publish_check_seconds", "accepted", 20us);
  m.observe("publish_check_seconds", "accepted", 40us);
  m.observe("publish_check_seconds", "bad_mac", 5us);
  EXPECT_EQ(m.snapshot("publish_check_seconds", "accepted").count, 2u);
  EXPECT_EQ(m.snapshot("publish_check_seconds", "accepted").max, 40us);
  EXPECT_EQ(m.snapshot("publish_check_seconds", "bad_mac").count, 1u);
  EXPECT_EQ(m.snapshot("publish_check_seconds", "none").count, 0u);
}

// ---------------------------------------------------------------- Prometheus text

struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

bool is_name_char(char c, bool first, bool metric) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (c == ':' && metric) return true;
  return !first && c >= '0' && c <= '9';
}

// take_name consumes a metric (or label) name from the front of `s`.
std::string take_name(std::string_view& s, bool metric) {
  std::size_t n = 0;
  while (n < s.size() && is_name_char(s[n], n == 0, metric)) ++n;
  std::string name(s.substr(0, n));
  s.remove_prefix(n);
  return name;
}

// parse_exposition reads text format 0.0.4 as a scraper would, failing the test on
// any line that is not a HELP/TYPE comment or a well-formed sample.
std::vector<sample> parse_exposition(const std::string& text, std::map<std::string, std::string>& types) {
  EXPECT_FALSE(text.empty());
  if (!text.empty()) {
    EXPECT_EQ(text.back(), '\n');
  }
  std::vector<sample> out;
  for (const std::string& line_text : lines_of(text)) {
    SCOPED_TRACE(line_text);
    std::string_view line = line_text;
    if (line.starts_with("# TYPE ")) {
      line.remove_prefix(7);
      const std::string name = take_name(line, true);
      EXPECT_FALSE(name.empty());
      EXPECT_TRUE(line == " counter" || line == " gauge" || line == " histogram") << "TYPE " << line;
      EXPECT_EQ(types.count(name), 0u) << "second TYPE line for " << name;
      types[name] = std::string(line.substr(1));
      continue;
    }
    if (line.starts_with("# HELP ")) {
      line.remove_prefix(7);
      EXPECT_FALSE(take_name(line, true).empty());
      EXPECT_TRUE(line.starts_with(" "));
      continue;
    }
    sample s;
    s.name = take_name(line, true);
    EXPECT_FALSE(s.name.empty()) << "not a sample";
    if (line.starts_with("{")) {
      line.remove_prefix(1);
      while (!line.starts_with("}")) {
        const std::string label = take_name(line, false);
        EXPECT_FALSE(label.empty());
        if (!line.starts_with("=\"")) {
          ADD_FAILURE() << "expected =\" after label " << label;
          break;
        }
        line.remove_prefix(2);
        std::string value;
        bool closed = false;
        while (!line.empty() && !closed) {
          const char c = line.front();
          line.remove_prefix(1);
          if (c == '"') {
            closed = true;
          } else if (c == '\\' && !line.empty()) {
            const char e = line.front();
            line.remove_prefix(1);
            EXPECT_TRUE(e == '\\' || e == '"' || e == 'n') << "bad escape \\" << e;
            value += e == 'n' ? '\n' : e;
          } else {
            EXPECT_NE(c, '\n');
            value += c;
          }
        }
        EXPECT_TRUE(closed) << "unterminated label value";
        EXPECT_EQ(s.labels.count(label), 0u) << "label twice: " << label;
        s.labels[label] = value;
        if (line.starts_with(",")) {
          line.remove_prefix(1);
        } else if (!line.starts_with("}")) {
          ADD_FAILURE() << "expected , or } after a label";
          break;
        }
      }
      if (line.starts_with("}")) line.remove_prefix(1);
    }
    EXPECT_TRUE(line.starts_with(" ")) << "no space before the value";
    if (!line.empty()) line.remove_prefix(1);
    s.value = std::string(line);
    EXPECT_FALSE(s.value.empty());
    EXPECT_EQ(s.value.find(' '), std::string::npos) << "no timestamps are exported";
    if (s.value != "NaN" && s.value != "+Inf" && s.value != "-Inf") {
      std::size_t used = 0;
      EXPECT_NO_THROW((void)std::stod(s.value, &used));
      EXPECT_EQ(used, s.value.size());
    }
    // The family must have been typed before its first sample.
    std::string family = s.name;
    for (std::string_view suffix : {"_bucket", "_sum", "_count"})
      if (!types.count(family) && family.ends_with(suffix)) family.resize(family.size() - suffix.size());
    EXPECT_TRUE(types.count(family)) << "sample before # TYPE";
    EXPECT_EQ(s.name.rfind("agentbus_", 0), 0u);
    out.push_back(std::move(s));
  }
  return out;
}

TEST(Prometheus, ExpositionParsesAsExpected) {
  metrics m;
  m.increment("envelopes_total", "accepted", 7);
  m.increment("envelopes_total", "bad_mac");
  m.increment("frames_malformed_total", {}, 2);
  m.set_gauge("agents_online", "", 4);
  for (int us = 1; us <= 100; ++us) m.observe("publish_check_seconds", "accepted", std::chrono::microseconds(us));
  EXPECT_THROW(m.describe("described_total", metric_kind::counter, "Help with a \\ backslash.", "kind"), std::invalid_argument);
  EXPECT_THROW(m.describe("described_total", metric_kind::counter, "Help with a\nnewline.", "kind"), std::invalid_argument);
  m.describe("described_total", metric_kind::counter, "Help of a described metric.", "kind");
  m.increment(dyn("described_total"), "x");

  const std::string text = m.to_prometheus_text();
  std::map<std::string, std::string> types;
  const std::vector<sample> samples = parse_exposition(text, types);

  EXPECT_EQ(types["agentbus_envelopes_total"], "counter");
  EXPECT_EQ(types["agentbus_frames_malformed_total"], "counter");
  EXPECT_EQ(types["agentbus_agents_online"], "gauge");
  EXPECT_EQ(types["agentbus_publish_check_seconds"], "histogram");
  EXPECT_EQ(types["agentbus_tpm_operation_duration_seconds"], "histogram");
  EXPECT_EQ(types["agentbus_tpm_operation_failures_total"], "counter");
  EXPECT_EQ(types["agentbus_build_info"], "gauge");
  EXPECT_NE(text.find("# HELP agentbus_envelopes_total Envelopes"), std::string::npos);
  EXPECT_NE(text.find("# HELP agentbus_described_total Help of a described metric.\n"), std::string::npos) << text;

  std::map<std::string, std::string> flat;  // "name{labels}" -> value
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
  for (const sample& s : samples) {
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "|" + k + "=" + v;
    flat[key] = s.value;
    if (s.name == "agentbus_publish_check_seconds_bucket") {
      EXPECT_EQ(s.labels.at("outcome"), "accepted");
      const std::string& le = s.labels.at("le");
      buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), std::stod(s.value));
    }
  }
  EXPECT_EQ(flat["agentbus_envelopes_total|outcome=accepted"], "7");
  EXPECT_EQ(flat["agentbus_envelopes_total|outcome=bad_mac"], "1");
  EXPECT_EQ(flat["agentbus_frames_malformed_total"], "2");
  EXPECT_EQ(flat["agentbus_agents_online"], "4");
  EXPECT_EQ(flat["agentbus_described_total|kind=x"], "1");
  EXPECT_EQ(flat["agentbus_publish_check_seconds_count|outcome=accepted"], "100");
  EXPECT_DOUBLE_EQ(std::stod(flat["agentbus_publish_check_seconds_sum|outcome=accepted"]), 0.00505);
  EXPECT_EQ(flat["agentbus_enrolments_total|outcome=accepted"], "0");  // there before its first increment
  EXPECT_EQ(flat["agentbus_internal_errors_total"], "0");
  EXPECT_EQ(flat["agentbus_registry_errors_total"], "0");

  ASSERT_EQ(buckets.size(), kHistogramBuckets);
  EXPECT_EQ(buckets.front().first, 1e-6);
  EXPECT_EQ(buckets[kHistogramBuckets - 2].first, 10.0);
  EXPECT_TRUE(std::isinf(buckets.back().first));
  EXPECT_EQ(buckets.back().second, 100.0);
  for (std::size_t i = 1; i < buckets.size(); ++i) {
    EXPECT_LT(buckets[i - 1].first, buckets[i].first);
    EXPECT_LE(buckets[i - 1].second, buckets[i].second);  // cumulative
  }
  EXPECT_DOUBLE_EQ(buckets[1].first, 1.8e-6);
  EXPECT_EQ(buckets[1].second, 1.0);
  EXPECT_DOUBLE_EQ(buckets[7].first, 56e-6);
  EXPECT_EQ(buckets[7].second, 56.0);
}

TEST(Prometheus, LabelValuesAreEscaped) {
  metrics m;
  m.describe("odd_total", metric_kind::counter, "Odd.", "what");
  const std::string odd = "say \"hi\"\\\nbye";
  m.increment(dyn("odd_total"), odd);
  const std::string text = m.to_prometheus_text();
  EXPECT_NE(text.find(R"(agentbus_odd_total{what="say \"hi\"\\\nbye"} 1)"), std::string::npos) << text;
  std::map<std::string, std::string> types;
  const auto samples = parse_exposition(text, types);
  bool found = false;
  for (const auto& sm : samples)
    if (sm.name == "agentbus_odd_total") {
      EXPECT_EQ(sm.labels.at("what"), odd);  // round-trips through the escapes
      found = true;
    }
  EXPECT_TRUE(found);
}

TEST(Prometheus, TpmStatisticsAreHistogramsInSeconds) {
  metrics m;
  tpm::tpm_op_stats sign{"sign"};
  sign.count = 3;
  sign.failures = 1;
  sign.total_time = 6ms;
  sign.latency_buckets[5] = 2;      // <= 5 ms
  sign.latency_buckets.back() = 1;  // > 120 s
  m.set_tpm_source([sign] { return std::vector<tpm::tpm_op_stats>{sign}; });
  const std::string text = m.to_prometheus_text();
  std::map<std::string, std::string> types;
  const auto samples = parse_exposition(text, types);
  std::map<std::string, std::string> by;
  for (const auto& sm : samples) {
    if (sm.name.rfind("agentbus_tpm_", 0) != 0) continue;
    EXPECT_EQ(sm.labels.at("operation"), "sign");
    by[sm.name + (sm.labels.count("le") ? "|" + sm.labels.at("le") : "")] = sm.value;
  }
  EXPECT_EQ(by["agentbus_tpm_operation_failures_total"], "1");
  EXPECT_EQ(by["agentbus_tpm_operation_duration_seconds_count"], "3");
  EXPECT_DOUBLE_EQ(std::stod(by["agentbus_tpm_operation_duration_seconds_sum"]), 0.006);
  EXPECT_EQ(by["agentbus_tpm_operation_duration_seconds_bucket|0.0025"], "0");
  EXPECT_EQ(by["agentbus_tpm_operation_duration_seconds_bucket|0.005"], "2");
  EXPECT_EQ(by["agentbus_tpm_operation_duration_seconds_bucket|120"], "2");
  EXPECT_EQ(by["agentbus_tpm_operation_duration_seconds_bucket|+Inf"], "3");
  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  ASSERT_EQ(j["tpm"].size(), 1u);
  EXPECT_EQ(j["tpm"][0]["total_ns"], 6'000'000);
}

TEST(Prometheus, AFreshRegistryShowsEveryFamilyAtZero) {
  metrics m;
  std::map<std::string, std::string> types;
  const auto samples = parse_exposition(m.to_prometheus_text(), types);
  for (const catalogue_entry& e : kMetricCatalogue) {
    EXPECT_TRUE(types.count("agentbus_" + std::string(e.name))) << e.name;
    if (e.label_name.empty() || !e.preload.empty()) {
      bool has_sample = false;
      const std::string full = "agentbus_" + std::string(e.name);
      for (const auto& sm : samples)
        has_sample = has_sample || sm.name == full || sm.name == full + "_count";  // a histogram: its _count
      EXPECT_TRUE(has_sample) << e.name << " has a series from the start";
    }
  }
  for (const auto& sm : samples) {
    EXPECT_EQ(sm.labels.count("label"), 0u) << sm.name;  // every label is named after what it holds
    if (sm.name != "agentbus_build_info" && sm.name != "agentbus_policy_loaded_timestamp_seconds" &&
        !sm.name.ends_with("_bucket")) {
      EXPECT_EQ(std::stod(sm.value), 0.0) << sm.name;
    }
  }
}

// ---------------------------------------------------------------- JSON

TEST(MetricsJson, ParsesWithNlohmann) {
  metrics m;
  m.increment("envelopes_total", "accepted", 3);
  m.increment("frames_malformed_total");
  m.set_gauge("agents_online", "", 2.5);
  for (int us = 1; us <= 100; ++us) m.observe("publish_check_seconds", "accepted", std::chrono::microseconds(us));
  m.describe("bytes_total", metric_kind::counter, "Bytes.", "from");
  m.increment(dyn("bytes_total"), "\xff\xfe");  // not UTF-8: replaced, not thrown

  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  ASSERT_TRUE(j["counters"].is_array());
  bool found = false;
  for (const auto& c : j["counters"]) {
    if (c["name"] == "envelopes_total") {
      EXPECT_EQ(c["labels"]["outcome"], "accepted");
      EXPECT_EQ(c["value"], 3);
      found = true;
    }
    if (c["name"] == "frames_malformed_total") {
      EXPECT_TRUE(c["labels"].empty());
    }
  }
  EXPECT_TRUE(found);
  bool gauge_found = false;
  for (const auto& g : j["gauges"])
    if (g["name"] == "agents_online") {
      EXPECT_EQ(g["value"], 2.5);
      gauge_found = true;
    }
  EXPECT_TRUE(gauge_found);
  ASSERT_EQ(j["histograms"].size(), 1u);
  const auto& h = j["histograms"][0];
  EXPECT_EQ(h["name"], "publish_check_seconds");
  EXPECT_EQ(h["labels"]["outcome"], "accepted");
  EXPECT_EQ(h["count"], 100);
  EXPECT_EQ(h["sum_ns"], 5'050'000);
  EXPECT_EQ(h["p50_ns"], 50'000);
  EXPECT_EQ(h["p99_ns"], 99'000);
  EXPECT_EQ(h["max_ns"], 100'000);
  EXPECT_EQ(h["bucket_counts"].size(), kHistogramBuckets);
  EXPECT_EQ(j["histogram_bounds_ns"].size(), kHistogramBoundsNs.size());
  EXPECT_EQ(j["histogram_bounds_ns"][1], 1800);
}

// ---------------------------------------------------------------- concurrency

TEST(MetricsConcurrency, FourThreadsSumExactly) {
  metrics m;
  m.describe("per_thread_total", metric_kind::counter, "Per thread.", "thread");
  constexpr int kThreads = 4, kPerThread = 200'000;
  const char* outcomes[] = {"accepted", "bad_mac", "replayed"};
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      // Every thread races to create the same series first.
      for (int i = 0; i < kPerThread; ++i) {
        m.increment("envelopes_total", outcomes[i % 3]);
        if (i % 1000 == 0) m.observe("publish_check_seconds", "accepted", std::chrono::microseconds(i % 97));
      }
      m.get_counter(dyn("per_thread_total"), std::to_string(t)).increment(kPerThread);
    });
  }
  std::thread reader([&] {
    while (!go.load()) std::this_thread::yield();
    for (int i = 0; i < 50; ++i) {
      (void)m.to_prometheus_text();
      (void)m.to_json();
    }
  });
  go = true;
  for (auto& t : threads) t.join();
  reader.join();

  std::uint64_t total = 0;
  for (const char* o : outcomes) total += m.value("envelopes_total", o);
  EXPECT_EQ(total, std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(m.value("envelopes_total", "accepted"), std::uint64_t{kThreads} * ((kPerThread + 2) / 3));
  EXPECT_EQ(m.snapshot("publish_check_seconds", "accepted").count, std::uint64_t{kThreads} * (kPerThread / 1000));
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(m.value("per_thread_total", std::to_string(t)), std::uint64_t{kPerThread});
}

// ---------------------------------------------------------------- log formatters

struct captured_logger {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
  explicit captured_logger(std::unique_ptr<spdlog::formatter> f, const std::string& name = "broker") {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    sink->set_formatter(std::move(f));
    logger = std::make_shared<spdlog::logger>(name, sink);
    logger->set_level(spdlog::level::trace);
  }
};

TEST(JsonLogFormatter, EscapesAndWritesOneLinePerRecord) {
  captured_logger c(std::make_unique<json_log_formatter>());
  const std::vector<std::string> messages = {
      "plain message",
      "quotes \"inside\" and a \\ backslash",
      "two\nlines\r\nand a\ttab",
      std::string("controls \x01\x1b[31m\x7f and a NUL ") + '\0' + " end",
      "utf-8 stays: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91",
      "\"}{\"level\":\"critical\",\"msg\":\"forged",
  };
  for (const std::string& msg : messages) c.logger->info("{}", msg);
  c.logger->warn("warned");
  c.logger->error("failed");
  c.logger->debug("debugging");

  const std::string text = c.out.str();
  const std::vector<std::string> lines = lines_of(text);
  ASSERT_EQ(lines.size(), messages.size() + 3) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), static_cast<long>(lines.size()));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    for (char ch : lines[i]) EXPECT_GE(static_cast<unsigned char>(ch), 0x20) << "raw control character";
    const nlohmann::json j = nlohmann::json::parse(lines[i]);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j.size(), 4u);
    EXPECT_TRUE(has_shape(j["ts"].get<std::string>(), "dddd-dd-ddTdd:dd:dd.ddddddZ")) << j["ts"];
    EXPECT_EQ(j["logger"], "broker");
    if (i < messages.size()) {
      EXPECT_EQ(j["level"], "info");
      EXPECT_EQ(j["msg"].get<std::string>(), messages[i]);  // round-trips exactly
    }
  }
  EXPECT_EQ(nlohmann::json::parse(lines[messages.size()])["level"], "warn");
  EXPECT_EQ(nlohmann::json::parse(lines[messages.size() + 1])["level"], "error");
  EXPECT_EQ(nlohmann::json::parse(lines[messages.size() + 2])["level"], "debug");
  EXPECT_NE(lines[2].find(R"("msg":"two\nlines\r\nand a\ttab")"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find(R"(\u0001\u001b[31m\u007f and a NUL \u0000 end)"), std::string::npos) << lines[3];
}

TEST(JsonLogFormatter, LogScopesAddFieldsInnermostWinning) {
  captured_logger c(std::make_unique<json_log_formatter>());
  {
    const log_scope outer{{"agent", "mon-1"}, {"role", "MONITOR"}, {"peer", ""}};  // empty: no key
    const log_scope inner{{"code", "acl_denied"}, {"agent", "mon-\"2\"\n"}, {"msg", "forged"}};
    c.logger->warn("refused");
  }
  c.logger->info("after");  // the scopes are gone
  const std::vector<std::string> lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), 2u);
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["msg"], "refused");  // a field never overrides the record's own keys
  EXPECT_EQ(j["agent"], "mon-\"2\"\n");
  EXPECT_EQ(j["role"], "MONITOR");
  EXPECT_EQ(j["code"], "acl_denied");
  EXPECT_FALSE(j.contains("peer"));
  EXPECT_EQ(j.size(), 7u);
  EXPECT_EQ(std::count(lines[0].begin(), lines[0].end(), '"'), 2 * 7 * 2 + 2) << "each key once: " << lines[0];
  EXPECT_EQ(nlohmann::json::parse(lines[1]).size(), 4u);
}

TEST(JsonLogFormatter, InvalidUtf8BecomesReplacementCharacters) {
  captured_logger c(std::make_unique<json_log_formatter>(), "bro\"ker");
  c.logger->info("bad \xff byte, overlong \xc0\xaf, surrogate \xed\xa0\x80, truncated \xe2\x82");
  const std::string line = c.out.str();
  const nlohmann::json j = nlohmann::json::parse(line);  // throws on invalid UTF-8
  EXPECT_EQ(j["logger"], "bro\"ker");
  const std::string msg = j["msg"];
  EXPECT_EQ(msg.find('\xff'), std::string::npos);
  EXPECT_NE(msg.find("bad \xEF\xBF\xBD byte"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated \xEF\xBF\xBD\xEF\xBF\xBD"), std::string::npos) << msg;
}

TEST(TextLogFormatter, OneLinePerRecordWithTimestampLevelAndLogger) {
  captured_logger c(make_text_log_formatter());
  c.logger->info("agent {} refused", "evil\n[2024-01-01 00:00:00.000] [info] [broker] forged");
  c.logger->warn("tab\there \x01");
  const std::vector<std::string> lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), 2u) << c.out.str();
  constexpr std::string_view kStamp = "[dddd-dd-dd dd:dd:dd.ddd] ";
  EXPECT_TRUE(has_shape(std::string_view(lines[0]).substr(0, kStamp.size()), kStamp)) << lines[0];
  EXPECT_TRUE(has_shape(std::string_view(lines[1]).substr(0, kStamp.size()), kStamp)) << lines[1];
  EXPECT_EQ(lines[0].substr(kStamp.size(), 16), "[info] [broker] ") << lines[0];
  EXPECT_EQ(lines[1].substr(kStamp.size(), 19), "[warning] [broker] ") << lines[1];
  EXPECT_NE(lines[0].find("agent evil\\n[2024-01-01"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("tab\\there \\x01"), std::string::npos) << lines[1];
}

TEST(SetupLogging, RejectsUnknownFormatOrLevelWithoutChangingAnything) {
  auto before = spdlog::default_logger();
  EXPECT_THROW(setup_logging("xml", "info", "broker"), std::invalid_argument);
  EXPECT_THROW(setup_logging("json", "warning", "broker"), std::invalid_argument);
  EXPECT_THROW(setup_logging("json", "", "broker"), std::invalid_argument);
  EXPECT_EQ(spdlog::default_logger(), before);
}

TEST(SetupLogging, JsonToStderrAtTheConfiguredLevel) {
  ::testing::internal::CaptureStderr();
  setup_logging("json", "warn", "broker");
  spdlog::info("not shown");
  spdlog::warn("shown \"{}\"", "quoted");
  spdlog::default_logger()->flush();
  const std::string err = ::testing::internal::GetCapturedStderr();
  const std::vector<std::string> lines = lines_of(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["logger"], "broker");
  EXPECT_EQ(j["msg"], "shown \"quoted\"");
  EXPECT_EQ(spdlog::default_logger()->name(), "broker");

  ::testing::internal::CaptureStderr();
  setup_logging("text", "debug", "broker");  // a second call replaces the first
  spdlog::debug("now text");
  const std::string text = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(text.find("] [debug] [broker] now text\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace agentbus::broker
