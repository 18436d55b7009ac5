#include "metrics_http.hpp"

#include <CivetServer.h>
#include <civetweb.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <stdexcept>
#include <string_view>

#include "util/log_limiter.hpp"

namespace agentbus::broker {
namespace {

// The one endpoint's probes (see the constructor's comment).
std::atomic<const health_probes*> g_probes{nullptr};
util::log_limiter g_http_log_limit{5};

void answer(mg_connection* conn, int code, const char* reason, const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, body.size());
  mg_write(conn, body.data(), body.size());
}

// answer_health answers /healthz and /readyz before civetweb looks for a handler; every
// other path goes on to prometheus-cpp's (/metrics) or civetweb's 404.
int answer_health(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr || info->local_uri == nullptr) return 0;
  const std::string_view uri = info->local_uri;
  if (uri != "/healthz" && uri != "/readyz") return 0;
  const health_probes* probes = g_probes.load();
  std::optional<std::string> problem = "not serving";
  if (probes != nullptr) {
    const auto& probe = uri == "/healthz" ? probes->live : probes->ready;
    problem = probe ? probe() : std::nullopt;
  }
  if (!problem) {
    answer(conn, 200, "OK", "ok\n");
    return 200;
  }
  answer(conn, 503, "Service Unavailable", *problem + "\n");
  return 503;
}

int health_route(mg_connection* conn) noexcept {
  // civetweb is C: nothing may be thrown through it.
  try {
    return answer_health(conn);
  } catch (...) {
    return 0;  // civetweb answers it (404); the prober retries
  }
}

// civetweb's own messages (a refused client, a broken request) go to the broker's
// log, rate-limited: a peer must not be able to flood it.
int http_log(const mg_connection*, const char* message) noexcept {
  try {
    if (g_http_log_limit.allow("metrics_http", "metrics endpoint")) spdlog::warn("metrics endpoint: {}", message);
  } catch (...) {
  }
  return 1;
}

// split_listen splits "host:port" (IPv4 host); the config loader validated it.
std::pair<std::string, std::string> split_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("metrics endpoint: '" + listen + "' is not host:port");
  return {listen.substr(0, colon), listen.substr(colon + 1)};
}

}  // namespace

std::string civetweb_access_list(const std::vector<std::string>& allow) {
  std::string acl = "-0.0.0.0/0";
  for (const auto& block : allow) acl += ",+" + block;
  return acl;
}

class metrics_http::collectable final : public prometheus::Collectable {
 public:
  explicit collectable(std::shared_ptr<const metrics> m) : metrics_(std::move(m)) {}
  // prometheus-cpp calls this from a civetweb handler: an exception must not reach C.
  std::vector<prometheus::MetricFamily> Collect() const override {
    try {
      return metrics_->collect();
    } catch (const std::exception& e) {
      spdlog::error("metrics endpoint: collecting failed: {}", e.what());
      return {};
    }
  }

 private:
  std::shared_ptr<const metrics> metrics_;
};

metrics_http::metrics_http(const std::string& listen, const std::vector<std::string>& allow,
                           std::shared_ptr<const metrics> m, health_probes probes)
    : collectable_(std::make_shared<collectable>(std::move(m))),
      probes_(std::make_unique<health_probes>(std::move(probes))) {
  const health_probes* none = nullptr;
  if (!g_probes.compare_exchange_strong(none, probes_.get()))
    throw std::logic_error("metrics endpoint: one per process");
  static const CivetCallbacks callbacks = [] {
    CivetCallbacks c;  // its constructor clears every callback
    c.begin_request = health_route;
    c.log_message = http_log;
    return c;
  }();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", listen,                             //
                                 "num_threads", "4",                                    // four requests at once, no more
                                 "request_timeout_ms", "3000",                          // a slow client is dropped
                                 "access_control_list", civetweb_access_list(allow),    //
                                 "enable_keep_alive", "no"},
        &callbacks);
  } catch (const std::exception& e) {
    g_probes.store(nullptr);
    throw std::runtime_error("metrics endpoint: cannot listen on " + listen + ": " + e.what());
  }
  exposer_->RegisterCollectable(collectable_, "/metrics");
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
  url_ = "http://" + split_listen(listen).first + ":" + std::to_string(port_);
  spdlog::info("metrics endpoint on {}/metrics (and /healthz, /readyz), answering {}", url_, civetweb_access_list(allow));
}

metrics_http::~metrics_http() {
  exposer_.reset();  // stops civetweb's threads: no request runs after this
  g_probes.store(nullptr);
}

}  // namespace agentbus::broker
