// agentbus-bench as a user runs it: --suite with small counts gives every row,
// complete, with positive rates and a CPU figure; --idle-agents and --duration
// report the broker's memory. Real broker processes and swtpm processes, started
// by the bench itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "support/swtpm_environment.hpp"

namespace agentbus {
namespace {

using nlohmann::json;
using testing::shell_quote;

struct bench_run {
  int exit_code = -1;
  std::string stdout_text, stderr_text;
  json j;
};

// run_bench runs agentbus-bench with `args`; stdout is parsed as one JSON object
// (progress lines go to stderr, kept for failure messages).
bench_run run_bench(const std::string& args) {
  testing::scoped_temp_dir tmp;
  const auto err = tmp.path() / "stderr.txt";
  const std::string bench = shell_quote((testing::binary_dir() / "tools" / "agentbus-bench").string());
  const std::string policy = shell_quote((testing::source_dir() / "config" / "policy.toml").string());
  // The subshell keeps stderr in the file (run_command merges what reaches it).
  auto r = testing::run_command("(" + bench + " --policy " + policy + " " + args + " 2>" + shell_quote(err.string()) + ")");
  bench_run out;
  out.exit_code = r.exit_code;
  out.stdout_text = r.output;
  out.stderr_text = testing::read_text(err);
  out.j = json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  return out;
}

TEST(BenchSuite, EveryRowPresentCompleteWithRatesAndCpu) {
  auto r = run_bench("--suite --sizes 64 --messages 300 --direct-messages 50 --sign-samples 50 --json");
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  ASSERT_TRUE(r.j.is_object()) << "stdout is not one JSON object:\n" << r.stdout_text;
  const json& j = r.j;
  EXPECT_TRUE(j.at("complete").get<bool>());
  EXPECT_EQ(j.at("parameters").at("sizes"), json::array({64}));
  EXPECT_GT(j.at("machine").at("cpus_online").get<long>(), 0);

  // The swtpm-alone signing loop.
  const json& sign = j.at("swtpm_sign");
  EXPECT_EQ(sign.at("signatures").get<int>(), 50);
  EXPECT_GT(sign.at("per_s").get<double>(), 0);
  EXPECT_GE(sign.at("tpm_ops").value("sign", 0), 50);

  const std::set<std::string> expected{"plain",     "curve",       "software", "tpm", "tpm-batch",
                                       "tcp-batch", "curve-batch", "federated"};
  std::set<std::string> seen;
  for (const json& row : j.at("rows")) {
    const std::string name = row.at("row").get<std::string>();
    SCOPED_TRACE(name);
    EXPECT_TRUE(seen.insert(name).second) << "row twice";
    EXPECT_FALSE(row.contains("error")) << row.value("error", "");
    EXPECT_EQ(row.at("size").get<std::size_t>(), 64u);
    const std::uint64_t messages = name == "tpm" ? 50 : 300;
    EXPECT_EQ(row.at("messages").get<std::uint64_t>(), messages);
    EXPECT_EQ(row.at("sent").get<std::uint64_t>(), messages);
    EXPECT_EQ(row.at("delivered").get<std::uint64_t>(), messages);
    EXPECT_EQ(row.at("lost").get<std::uint64_t>(), 0u);
    EXPECT_EQ(row.at("rejected").get<std::uint64_t>(), 0u);
    EXPECT_FALSE(row.at("timed_out").get<bool>());
    EXPECT_TRUE(row.at("complete").get<bool>());

    EXPECT_GT(row.at("envelopes_per_s").get<double>(), 0);
    const json& lat = row.at("latency_ms");
    EXPECT_GT(lat.at("p50").get<double>(), 0);
    EXPECT_GE(lat.at("p99").get<double>(), lat.at("p50").get<double>());
    EXPECT_GE(lat.at("max").get<double>(), lat.at("p99").get<double>());
    EXPECT_GT(row.at("cpu_s").get<double>(), 0);
    EXPECT_GT(row.at("cpu_s_per_100k").get<double>(), 0);
    EXPECT_TRUE(row.at("cpu_complete").get<bool>());
    EXPECT_GT(row.at("ratio_to_plain").get<double>(), 0);
    if (name == "plain") {
      EXPECT_DOUBLE_EQ(row.at("ratio_to_plain").get<double>(), 1.0);
    }

    const std::string scope = row.at("cpu_scope").get<std::string>();
    if (name == "plain" || name == "curve") {
      EXPECT_EQ(scope, "bench");
    } else if (name == "software") {
      EXPECT_EQ(scope, "bench + broker");
    } else if (name == "federated") {
      // Both brokers, the NATS server between them, the swtpms of two brokers and two agents.
      EXPECT_EQ(scope, "bench + broker + far broker + nats-server + 4 swtpm");
    } else {
      EXPECT_EQ(scope, "bench + broker + 3 swtpm");  // the broker's and one per agent
    }

    const bool batch_row = name == "tpm-batch" || name == "tcp-batch" || name == "curve-batch" || name == "federated";
    EXPECT_EQ(row.at("transport").get<std::string>(),
              name == "tcp-batch" ? "tcp" : name == "curve-batch" ? "curve" : "ipc");
    if (name == "tpm" || batch_row) {
      EXPECT_GT(row.at("tpm_signatures_per_s").get<double>(), 0);
      const auto sigs = row.at("tpm_signatures").get<std::uint64_t>();
      if (name == "tpm") {
        EXPECT_EQ(sigs, messages);  // one signature per envelope
        EXPECT_GT(row.at("ratio_to_swtpm_sign").get<double>(), 0);
      } else {
        EXPECT_GE(sigs, 1u);
        EXPECT_LE(sigs, messages);
      }
    } else {
      EXPECT_TRUE(row.at("tpm_signatures").is_null());
    }
  }
  EXPECT_EQ(seen, expected);
}

TEST(BenchSuite, IdleAgentsAndDurationReportBrokerMemory) {
  auto r = run_bench(
      "--software --idle-agents 20 --idle-settle 0.2 --duration 2 --rate 200 --sample-interval 0.5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  ASSERT_TRUE(r.j.is_object()) << r.stdout_text;
  const json& j = r.j;
  EXPECT_EQ(j.at("messages").get<std::uint64_t>(), 400u);  // rate x duration
  EXPECT_EQ(j.at("delivered").get<std::uint64_t>(), 400u);
  EXPECT_DOUBLE_EQ(j.at("duration_s").get<double>(), 2.0);
  EXPECT_GT(j.at("wall_s").get<double>(), 1.5);  // paced, not a burst

  const json& m = j.at("memory");
  EXPECT_EQ(m.at("idle_agents").get<int>(), 20);
  const json& rss = m.at("broker_rss_kib");
  for (const char* k : {"before_idle", "after_idle", "end"}) {
    SCOPED_TRACE(k);
    ASSERT_TRUE(rss.at(k).is_number()) << rss.dump();
    EXPECT_GT(rss.at(k).get<std::uint64_t>(), 1024u);  // a broker is more than a MiB
  }
  // Start, every 0.5 s of a 2 s run, end.
  EXPECT_GE(m.at("broker_rss_samples").size(), 4u) << m.dump();
  EXPECT_TRUE(m.contains("broker_rss_growth_kib"));
  // Each idle agent is a real agent in this process: its threads are visible.
  EXPECT_GE(m.at("bench_threads").at("after").get<std::uint64_t>(),
            m.at("bench_threads").at("before").get<std::uint64_t>() + 20);
}

TEST(BenchSuite, RefusesContradictoryOptions) {
  EXPECT_EQ(run_bench("--suite --idle-agents 5").exit_code, 2);
  EXPECT_EQ(run_bench("--suite --mode plain").exit_code, 2);
  EXPECT_EQ(run_bench("--duration 5").exit_code, 2);  // --duration needs --rate
  EXPECT_EQ(run_bench("--mode plain --idle-agents 5").exit_code, 2);
}

}  // namespace
}  // namespace agentbus
