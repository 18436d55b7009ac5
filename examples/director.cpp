// director — example DIRECTOR agent (RSA-3072-PSS / SHA-384).
//
// Subscribes to metrics/cpu and design/updates, publishes a directive on
// directives/all, sends a direct message to the monitor, asks the architect a
// question (request/reply) and, with --optimizer, the optimizer for a plan; prints
// everything it receives, and exits after --seconds (default 5). Exit 0 when every call succeeded and the reply arrived.
#include <fmt/format.h>

#include <atomic>
#include <chrono>

#include "example_agent.hpp"

using namespace agentbus;
using namespace agentbus::examples;

int main(int argc, char** argv) {
  std::string monitor = "monitor-1";
  std::string architect = "architect-1";
  std::string optimizer;  // empty: no optimizer to ask
  int request_timeout_ms = 5000;
  auto extra = [&](CLI::App& app) {
    app.add_option("--monitor", monitor, "Monitor to send the direct message to")->capture_default_str();
    app.add_option("--architect", architect, "Architect to send the request to")->capture_default_str();
    app.add_option("--optimizer", optimizer, "Optimizer to ask for a plan as well (e.g. the Python example)");
    app.add_option("--request-timeout-ms", request_timeout_ms, "Request timeout")->capture_default_str();
  };
  return run_example(
      argc, argv, "agentbus example DIRECTOR: subscribes, publishes a directive, messages the monitor, asks the architect",
      "director-1", "DIRECTOR", 5, extra, [&](example_agent& a) {
        agent& bus = a.bus();
        std::atomic<int> metrics{0}, designs{0}, directs{0};

        bus.on_message([&](const message& m) {
          ++directs;
          a.print_delivery(m);
        });
        if (a.check(bus.subscribe("metrics/cpu", [&](const message& m) {
                      ++metrics;
                      a.print_delivery(m);
                    }),
                    "subscribe metrics/cpu"))
          a.say("SUBSCRIBED metrics/cpu");
        if (a.check(bus.subscribe("design/updates", [&](const message& m) {
                      ++designs;
                      a.print_delivery(m);
                    }),
                    "subscribe design/updates"))
          a.say("SUBSCRIBED design/updates");

        // A directive to every subscriber of directives/all.
        std::string directive = fmt::format(
            R"({{"directive":"raise metrics sampling to 5 Hz and review the cache design","issued_ms":{}}})", now_ms());
        if (a.check(bus.publish("directives/all", "application/json", as_bytes(directive)), "publish directives/all"))
          a.say("PUBLISHED on directives/all: " + directive);

        // A direct message to the monitor (it answers with a direct message).
        std::string note = fmt::format(R"({{"note":"report your current load to me directly","sent_ms":{}}})", now_ms());
        if (a.check(bus.send(monitor, "application/json", as_bytes(note)), "send to " + monitor))
          a.say("SENT to " + monitor + ": " + note);

        // Request/reply with the architect.
        std::string question = R"({"question":"which cache eviction policy for the metrics store?"})";
        a.say("REQUEST to " + architect + ": " + question);
        auto t0 = std::chrono::steady_clock::now();
        auto reply = bus.request(architect, "application/json", as_bytes(question),
                                 std::chrono::milliseconds(request_timeout_ms));
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (reply) {
          a.print_delivery(*reply, "REPLY");
          a.say(fmt::format("REQUEST to {} answered in {:.1f} ms", architect, ms));
        } else {
          a.check(reply.error(), "request to " + architect);
        }

        // Request/reply with the optimizer, when there is one (the demo's is a Python agent).
        bool plan_ok = true;
        if (!optimizer.empty()) {
          std::string ask = R"({"question":"what should we do about the load?"})";
          a.say("REQUEST to " + optimizer + ": " + ask);
          auto plan = bus.request(optimizer, "application/json", as_bytes(ask),
                                  std::chrono::milliseconds(request_timeout_ms));
          plan_ok = plan.ok();
          if (plan)
            a.print_delivery(*plan, "REPLY");
          else
            a.check(plan.error(), "request to " + optimizer);
        }

        a.run_for();
        a.say(fmt::format("SUMMARY metrics/cpu={} design/updates={} direct={} reply={}{}", metrics.load(), designs.load(),
                          directs.load(), reply ? "yes" : "no",
                          optimizer.empty() ? "" : fmt::format(" plan={}", plan_ok ? "yes" : "no")));
        return a.failures() == 0 ? kExitOk : kExitFailed;
      });
}
