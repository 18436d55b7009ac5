// architect — example ARCHITECT agent (ECDSA P-384 / SHA3-384).
//
// Subscribes to directives/all and metrics/cpu, answers requests (the reply is
// the return value of the on_request handler), and publishes on design/updates:
// once per directive it receives and every --update-ms (default 2 s). Runs until
// SIGINT/SIGTERM unless --seconds is given.
#include <fmt/format.h>

#include <atomic>

#include "example_agent.hpp"

using namespace agentbus;
using namespace agentbus::examples;

int main(int argc, char** argv) {
  int update_ms = 2000;
  auto extra = [&](CLI::App& app) {
    app.add_option("--update-ms", update_ms, "Interval between periodic design/updates")
        ->capture_default_str()
        ->check(CLI::Range(100, 3'600'000));
  };
  return run_example(
      argc, argv, "agentbus example ARCHITECT: answers requests, publishes design/updates, follows directives and metrics",
      "architect-1", "ARCHITECT", 0, extra, [&](example_agent& a) {
        agent& bus = a.bus();
        std::atomic<int> directives{0}, metrics{0}, requests{0}, revision{0};

        auto publish_update = [&](const std::string& reason) {
          std::string u = fmt::format(R"({{"design":"metrics-store","revision":{},"reason":"{}"}})", ++revision, reason);
          if (a.check(bus.publish("design/updates", "application/json", as_bytes(u)), "publish design/updates"))
            a.say("PUBLISHED on design/updates: " + u);
        };

        if (a.check(bus.subscribe("directives/all", [&](const message& m) {
                      ++directives;
                      a.print_delivery(m);
                      // React to every directive with a design update.
                      publish_update("directive " + short_id(m.header.message_id) + " from " + m.header.sender);
                    }),
                    "subscribe directives/all"))
          a.say("SUBSCRIBED directives/all");
        if (a.check(bus.subscribe("metrics/cpu", [&](const message& m) {
                      ++metrics;
                      a.print_delivery(m);
                    }),
                    "subscribe metrics/cpu"))
          a.say("SUBSCRIBED metrics/cpu");

        bus.on_request([&](const message& m) -> std::optional<bytes> {
          ++requests;
          a.print_delivery(m, "REQUEST");
          std::string answer = fmt::format(
              R"({{"answer":"LRU with a 10-minute TTL; shard by agent","metrics_seen":{},"request":"{}"}})",
              metrics.load(), short_id(m.header.message_id));
          a.say("ANSWERED " + m.header.sender + ": " + answer);
          return bytes(answer.begin(), answer.end());
        });
        bus.on_message([&](const message& m) { a.print_delivery(m); });

        a.run_for(std::chrono::milliseconds(update_ms), [&] { publish_update("periodic"); });
        a.say(fmt::format("SUMMARY directives={} metrics/cpu={} requests={} updates={}", directives.load(), metrics.load(),
                          requests.load(), revision.load()));
        return a.failures() == 0 ? kExitOk : kExitFailed;
      });
}
