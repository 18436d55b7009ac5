// monitor — example MONITOR agent (ECDSA P-256 / SHA-256).
//
// Subscribes to directives/all, publishes a metrics/cpu sample every 200 ms
// (--interval-ms), and answers direct messages (a direct message back to the
// sender) and requests. Runs until SIGINT/SIGTERM unless --seconds is given.
#include <fmt/format.h>

#include <atomic>
#include <fstream>

#include "example_agent.hpp"

using namespace agentbus;
using namespace agentbus::examples;

namespace {

// load1 reads the 1-minute load average (a real metric, so the samples move).
double load1() {
  std::ifstream f("/proc/loadavg");
  double v = 0;
  f >> v;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int interval_ms = 200;
  auto extra = [&](CLI::App& app) {
    app.add_option("--interval-ms", interval_ms, "Interval between metrics/cpu samples")
        ->capture_default_str()
        ->check(CLI::Range(10, 60'000));
  };
  return run_example(
      argc, argv, "agentbus example MONITOR: publishes metrics/cpu, follows directives, answers direct messages",
      "monitor-1", "MONITOR", 0, extra, [&](example_agent& a) {
        agent& bus = a.bus();
        std::atomic<int> directives{0}, directs{0}, send_failures{0};

        if (a.check(bus.subscribe("directives/all", [&](const message& m) {
                      ++directives;
                      a.print_delivery(m);
                    }),
                    "subscribe directives/all"))
          a.say("SUBSCRIBED directives/all");

        bus.on_message([&](const message& m) {
          ++directs;
          a.print_delivery(m);
          std::string answer = fmt::format(R"({{"ack":"{}","load1":{:.2f},"agent":"{}"}})", short_id(m.header.message_id),
                                           load1(), a.name());
          status st = bus.send(m.header.sender, "application/json", as_bytes(answer));
          if (st.ok())
            a.say("SENT to " + m.header.sender + ": " + answer);
          else {
            ++send_failures;
            a.say("FAILED answer to " + m.header.sender + ": " + st.to_string());
          }
        });
        bus.on_request([&](const message& m) -> std::optional<bytes> {
          a.print_delivery(m, "REQUEST");
          std::string answer = fmt::format(R"({{"load1":{:.2f},"agent":"{}"}})", load1(), a.name());
          a.say("ANSWERED " + m.header.sender + ": " + answer);
          return bytes(answer.begin(), answer.end());
        });

        std::uint64_t sample = 0;
        a.run_for(std::chrono::milliseconds(interval_ms), [&] {
          std::string s = fmt::format(R"({{"agent":"{}","sample":{},"load1":{:.2f},"ts_ms":{}}})", a.name(), ++sample,
                                      load1(), now_ms());
          if (a.check(bus.publish("metrics/cpu", "application/json", as_bytes(s)), "publish metrics/cpu"))
            a.say("PUBLISHED on metrics/cpu: " + s);
        });
        a.say(fmt::format("SUMMARY samples={} directives={} direct={}", sample, directives.load(), directs.load()));
        return a.failures() == 0 && send_failures == 0 ? kExitOk : kExitFailed;
      });
}
