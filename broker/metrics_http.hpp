// metrics_http.hpp — the broker's HTTP endpoint for Prometheus and for whatever
// watches the service: GET /metrics (prometheus-cpp's pull exposer, the text
// exposition format rendered from metrics::collect()), /healthz and /readyz.
//
// What an unauthenticated peer can make it do, and what that costs: the endpoint
// listens only where [metrics] listen says (loopback by default) and answers only
// addresses [metrics] allow lists (civetweb's access control list, checked before a
// request is read); four server threads serve requests one at a time each, further
// connections wait in the kernel's listen queue, and a request that does not arrive
// within 3 s is dropped. A local user within the allow list can still hold the four
// threads with idle connections (a probe then times out): keep the allow list to the
// scraper and the prober where the host has untrusted users. A scrape costs one pass over the broker's few dozen series
// under the registry's reader lock, and the TPM's statistics mutex once; nothing of
// a request is kept afterwards. Nothing on the event loop waits for it.
//
// Threads: civetweb's (its listener and the two workers). The probes and the
// registry are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metrics.hpp"

namespace prometheus {
class Exposer;
}

namespace agentbus::broker {

// health_probes answer /healthz (live) and /readyz (ready): nullopt when the answer
// is yes (200 "ok"), else why not (503 and the reason, one line).
struct health_probes {
  std::function<std::optional<std::string>()> live;
  std::function<std::optional<std::string>()> ready;
};

class metrics_http {
 public:
  // Listens on `listen` ("127.0.0.1:9464"; port 0 picks a free one, see port()),
  // answering only clients in `allow` (IPv4 CIDR blocks, "127.0.0.1/32"). Throws
  // std::runtime_error when it cannot listen. One per process (the health routes
  // are found through a process-wide pointer: civetweb's request callback carries
  // no user data through prometheus-cpp's Exposer).
  metrics_http(const std::string& listen, const std::vector<std::string>& allow, std::shared_ptr<const metrics> m,
               health_probes probes);
  ~metrics_http();
  metrics_http(const metrics_http&) = delete;
  metrics_http& operator=(const metrics_http&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  // url is "http://host:port" with the port actually bound.
  const std::string& url() const noexcept { return url_; }

 private:
  class collectable;
  std::shared_ptr<collectable> collectable_;
  std::unique_ptr<health_probes> probes_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::uint16_t port_ = 0;
  std::string url_;
};

// civetweb_access_list turns CIDR blocks into civetweb's access_control_list ("-0.0.0.0/0,+127.0.0.1/32":
// deny all, then allow each). Exposed for tests.
std::string civetweb_access_list(const std::vector<std::string>& allow);

}  // namespace agentbus::broker
