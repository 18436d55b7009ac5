// transport_gate.hpp — the broker's ZAP handler: who may open a CurveZMQ connection
// on a tcp:// endpoint (schemas/protocol.md §1.3; ZeroMQ RFC 27).
//
// libzmq asks the handler once per TCP connection, after the client has completed
// the CurveZMQ handshake (proving it holds the secret of the key it names) and
// before a single message frame of that connection is accepted. The gate admits a
// client key when a usable enrolment token stands for it or an enrolled, unrevoked
// agent enrolled over it (registry::transport_admission), or any key when
// admit_unknown_keys is set. A refused peer never reaches the broker's queues: no
// message, no registry row, no metric label of its choosing; it costs one indexed
// registry read, after it has paid for a full CurveZMQ handshake.
//
// Thread: its own, started by the constructor and joined by the destructor, with its
// own REP socket on inproc://zeromq.zap.01 and its own registry connection (WAL
// reads: it sees what the event loop committed, so a token is admitted once
// token_create has answered and an agent's key once its WELCOME has gone). The
// constructor returns after the handler is bound, so that no CURVE endpoint is ever
// bound without it (libzmq would then admit every key: ../shared/NOTES.md 24).
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <filesystem>
#include <thread>

#include "metrics.hpp"

namespace agentbus::broker {

class transport_gate {
 public:
  transport_gate(zmq::context_t& ctx, std::filesystem::path registry_file, metrics& stats, bool admit_unknown_keys);
  ~transport_gate();
  transport_gate(const transport_gate&) = delete;
  transport_gate& operator=(const transport_gate&) = delete;

 private:
  void run(zmq::socket_t& rep);

  zmq::context_t& ctx_;
  const std::filesystem::path registry_file_;
  metrics& stats_;
  const bool admit_unknown_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace agentbus::broker
