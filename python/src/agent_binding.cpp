// agent_binding.cpp — AgentOptions, Message, Rejection, Stats and _Agent, the core
// that agentbus.Agent wraps.
//
// Threads and the GIL:
//  - every method that may wait releases the GIL, so other Python threads and the
//    agent's own dispatch thread run meanwhile;
//  - the agent's handlers (dispatch thread) call one Python callable, the `sink`,
//    with the GIL held. agentbus.Agent's sink refers to its Agent only weakly, so an
//    Agent that handlers refer to can still be garbage-collected, which closes it;
//  - close() takes the agent out of reach of new calls, waits (GIL released) for the
//    calls in flight, then destroys it (joining its threads); handlers still pending
//    are not called. Called on the dispatch thread itself (from a handler, or a
//    collection there), it leaves the destruction to a thread of its own, since a
//    thread cannot join itself.
#include <pybind11/chrono.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "agentbus/agent.hpp"
#include "agentbus/identity.hpp"
#include "agentbus/policy.hpp"
#include "binding.hpp"

namespace agentbus::python {

namespace {

// python_sink holds the Python callable the handlers call. It is destroyed with the
// agent, possibly on a thread that does not hold the GIL: the release takes it.
class python_sink {
 public:
  explicit python_sink(py::object fn) : fn_(std::move(fn)) {}
  ~python_sink() {
    if (!Py_IsInitialized() || _Py_IsFinalizing()) {
      (void)fn_.release();  // the interpreter is (going) away: leave the object to it
      return;
    }
    py::gil_scoped_acquire gil;
    fn_ = py::object();
  }
  python_sink(const python_sink&) = delete;
  python_sink& operator=(const python_sink&) = delete;

  // call runs fn(kind, key, make()) on the calling (dispatch) thread with the GIL
  // held, and hands the result to take() before letting the GIL go. Nothing
  // escapes: the Python side logs a handler's exceptions itself; what still escapes
  // (a failure in the sink) is reported as unraisable.
  template <typename Make, typename Take>
  void call(const char* kind, const std::string* key, Make&& make, Take&& take) {
    if (closing_.load()) return;
    py::gil_scoped_acquire gil;
    if (closing_.load() || !fn_) return;
    dispatch_thread_.store(std::this_thread::get_id());
    try {
      py::object result = fn_(kind, key ? py::object(py::str(*key)) : py::object(py::none()), make());
      take(result);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("agentbus handler sink");
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
      PyErr_WriteUnraisable(nullptr);
    }
  }
  template <typename Value>
  void deliver(const char* kind, const std::string* key, const Value& value) {
    call(kind, key, [&] { return py::cast(value); }, [](const py::object&) {});
  }
  void close() { closing_.store(true); }
  bool on_dispatch_thread() const { return dispatch_thread_.load() == std::this_thread::get_id(); }

 private:
  py::object fn_;
  std::atomic<bool> closing_{false};
  std::atomic<std::thread::id> dispatch_thread_{};
};

// closing_threads: the threads that destroy agents closed from their own handlers.
// agentbus's atexit hook joins them (join_closing), so that no agent is still being
// torn down while the interpreter and the libraries' statics go away.
class closing_threads {
 public:
  static void add(std::thread t) {
    std::lock_guard lock(mu());
    threads().push_back(std::move(t));
  }
  static void join_all() {
    std::vector<std::thread> taken;
    {
      std::lock_guard lock(mu());
      taken.swap(threads());
    }
    for (auto& t : taken)
      if (t.joinable()) t.join();
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::thread>& threads() {
    static std::vector<std::thread> v;
    return v;
  }
};

// core is the object behind agentbus.Agent._core.
class core {
 public:
  core(agent_options options, std::shared_ptr<identity_key> key, std::shared_ptr<const policy> pol, py::object sink)
      : sink_(std::make_shared<python_sink>(std::move(sink))) {
    std::shared_ptr<agent> a;
    {
      py::gil_scoped_release release;
      a = std::make_shared<agent>(std::move(options), std::move(key), std::move(pol));
    }
    auto sink_ref = sink_;
    a->on_message([sink_ref](const message& m) { sink_ref->deliver("message", nullptr, m); });
    a->on_rejected([sink_ref](const rejection& r) { sink_ref->deliver("rejected", nullptr, r); });
    a->on_request([sink_ref](const message& m) -> std::optional<bytes> {
      // The Python side returns bytes, or None for no reply.
      std::optional<bytes> reply;
      sink_ref->call("request", nullptr, [&] { return py::cast(m); }, [&](const py::object& r) {
        if (r.is_none()) return;
        std::string_view b = r.cast<py::bytes>();
        reply.emplace(b.begin(), b.end());
      });
      return reply;
    });
    name_ = a->name();
    agent_ = std::move(a);
  }
  ~core() { close(); }
  core(const core&) = delete;
  core& operator=(const core&) = delete;

  const std::string& name() const { return name_; }
  bool closed() const {
    std::lock_guard lock(mu_);
    return agent_ == nullptr;
  }

  void send(const std::string& to, const std::string& content_type, const std::string& payload) {
    auto a = live();
    py::gil_scoped_release release;
    check(a->send(to, content_type, as_bytes(payload)));
  }
  void publish(const std::string& topic, const std::string& content_type, const std::string& payload) {
    auto a = live();
    py::gil_scoped_release release;
    check(a->publish(topic, content_type, as_bytes(payload)));
  }
  void subscribe(const std::string& topic) {
    auto a = live();
    auto sink_ref = sink_;
    py::gil_scoped_release release;
    check(a->subscribe(topic, [sink_ref, topic](const message& m) { sink_ref->deliver("topic", &topic, m); }));
  }
  void queue_subscribe(const std::string& topic, const std::string& group) {
    auto a = live();
    auto sink_ref = sink_;
    py::gil_scoped_release release;
    check(a->queue_subscribe(topic, group, [sink_ref, topic](const message& m) { sink_ref->deliver("topic", &topic, m); }));
  }
  void unsubscribe(const std::string& topic) {
    auto a = live();
    py::gil_scoped_release release;
    check(a->unsubscribe(topic));
  }
  message request(const std::string& to, const std::string& content_type, const std::string& payload,
                  std::chrono::milliseconds timeout) {
    auto a = live();
    py::gil_scoped_release release;
    return take(a->request(to, content_type, as_bytes(payload), timeout));
  }
  agent_stats stats() const { return live()->stats(); }

  void close() {
    std::shared_ptr<agent> a;
    {
      std::lock_guard lock(mu_);
      a = std::move(agent_);
    }
    if (!a) return;
    sink_->close();
    if (sink_->on_dispatch_thread()) {
      // From a handler: the dispatch thread cannot join itself. A thread of its own
      // destroys the agent once this handler has returned and calls in flight ended;
      // join_closing() (at exit) waits for it.
      closing_threads::add(std::thread([a = std::move(a)]() mutable {
        wait_sole_owner(a);
        a.reset();
      }));
      return;
    }
    py::gil_scoped_release release;
    wait_sole_owner(a);
    a.reset();
  }

 private:
  std::shared_ptr<agent> live() const {
    std::lock_guard lock(mu_);
    if (!agent_) throw std::runtime_error("agent '" + name_ + "' is closed");
    return agent_;
  }
  // wait_sole_owner waits for the calls in flight (each holds a reference) to end.
  static void wait_sole_owner(const std::shared_ptr<agent>& a) {
    while (a.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  std::shared_ptr<python_sink> sink_;
  mutable std::mutex mu_;  // guards agent_ (the pointer, not the agent: it is thread-safe)
  std::shared_ptr<agent> agent_;
  std::string name_;
};

std::string header_topic(const envelope_header& h) { return h.to_kind == recipient_kind::topic ? h.to : std::string(); }

const char* type_name(envelope_type t) {
  switch (t) {
    case envelope_type::data: return "data";
    case envelope_type::request: return "request";
    case envelope_type::reply: return "reply";
    case envelope_type::error: return "error";
    case envelope_type::control: return "control";
  }
  return "unknown";
}

}  // namespace

void bind_agent(py::module_& m) {
  py::class_<agent_options>(m, "AgentOptions", "The options of agentbus::agent_options (agentbus.Agent sets them).")
      .def(py::init<>())
      .def_readwrite("name", &agent_options::name)
      .def_readwrite("broker_endpoint", &agent_options::broker_endpoint)
      .def_readwrite("broker_fingerprint", &agent_options::broker_fingerprint)
      .def_readwrite("insecure_trust_any_broker", &agent_options::insecure_trust_any_broker)
      .def_readwrite("enrolment_token", &agent_options::enrolment_token)
      .def_readwrite("broker_transport_key", &agent_options::broker_transport_key)
      .def_readwrite("transport_key_file", &agent_options::transport_key_file)
      .def_readwrite("insecure_plain_tcp", &agent_options::insecure_plain_tcp)
      .def_readwrite("connect_timeout", &agent_options::connect_timeout)
      .def_readwrite("session_timeout", &agent_options::session_timeout)
      .def_readwrite("max_clock_skew", &agent_options::max_clock_skew)
      .def_readwrite("rekey_after_messages", &agent_options::rekey_after_messages)
      .def_readwrite("rekey_after", &agent_options::rekey_after)
      .def_readwrite("rekey_grace", &agent_options::rekey_grace)
      .def_readwrite("max_pending", &agent_options::max_pending)
      .def_readwrite("receive_queue", &agent_options::receive_queue)
      .def_readwrite("heartbeat_interval", &agent_options::heartbeat_interval)
      .def_readwrite("ping_interval", &agent_options::ping_interval)
      .def_readwrite("batch_signing", &agent_options::batch_signing)
      .def_readwrite("max_batch", &agent_options::max_batch)
      .def_readwrite("batch_window", &agent_options::batch_window)
      .def_readwrite("wire_batching", &agent_options::wire_batching);

  m.def("_join_closing", [] { closing_threads::join_all(); }, py::call_guard<py::gil_scoped_release>(),
        "Wait for the agents closed from their own handlers to be torn down (agentbus's atexit hook).");

  m.def("load_bundle", &load_enrolment_bundle, py::arg("file"), py::arg("options"),
        "Read an enrolment bundle (agentbus-trust token create --out) into `options`; returns its role.");

  py::class_<message>(m, "Message", "A verified, delivered envelope.")
      .def_property_readonly("sender", [](const message& x) { return x.header.sender; })
      .def_property_readonly("sender_role", [](const message& x) { return x.sender_role; })
      .def_property_readonly("recipient", [](const message& x) { return x.header.to; },
                             "The agent or topic it was sent to.")
      .def_property_readonly("topic", [](const message& x) -> py::object {
        if (x.header.to_kind != recipient_kind::topic) return py::none();
        return py::str(header_topic(x.header));
      }, "The topic, or None for a direct message, request or reply.")
      .def_property_readonly("type", [](const message& x) { return std::string(type_name(x.header.type)); },
                             "'data', 'request' or 'reply'.")
      .def_property_readonly("content_type", [](const message& x) { return x.header.content_type; })
      .def_property_readonly("payload", [](const message& x) { return to_py(x.header.payload); })
      .def_property_readonly("message_id", [](const message& x) { return to_py(x.header.message_id); })
      .def_property_readonly("correlation_id", [](const message& x) { return to_py(x.header.correlation_id); })
      .def_property_readonly("headers", [](const message& x) { return x.header.headers; })
      .def_property_readonly("sequence", [](const message& x) { return x.header.sequence; })
      .def_property_readonly("timestamp_ms", [](const message& x) { return x.header.timestamp_ms; })
      .def_property_readonly("suite", [](const message& x) { return x.header.suite; })
      .def_property_readonly("assurance", [](const message& x) { return std::string(assurance_name(x.level)); },
                             "'tpm', 'tpm-batch' or 'software'.")
      .def_property_readonly("sender_protection",
                             [](const message& x) { return std::string(protection_name(x.sender_protection)); })
      .def("__repr__", [](const message& x) {
        return "<agentbus.Message " + std::string(type_name(x.header.type)) + " from " + x.header.sender + " to " +
               x.header.to + ", " + std::to_string(x.header.payload.size()) + " bytes>";
      });

  py::class_<rejection>(m, "Rejection", "An envelope refused (by the broker, this library, or before it left).")
      .def_readonly("where", &rejection::where, "'broker', 'receiver' or 'sender'.")
      .def_property_readonly("code", [](const rejection& r) { return static_cast<int>(r.reason.code()); })
      .def_property_readonly("code_name", [](const rejection& r) { return std::string(status_code_name(r.reason.code())); })
      .def_property_readonly("detail", [](const rejection& r) { return r.reason.detail(); })
      .def_readonly("sender", &rejection::sender)
      .def_readonly("recipient", &rejection::recipient)
      .def_property_readonly("message_id", [](const rejection& r) { return to_py(r.message_id); })
      .def("__repr__", [](const rejection& r) {
        return "<agentbus.Rejection at " + r.where + ": " + r.reason.to_string() + ">";
      });

  py::class_<tpm::tpm_op_stats>(m, "TpmOperation",
                                "One kind of TPM operation behind the agent's identity (agentbus::tpm::tpm_op_stats).")
      .def_readonly("operation", &tpm::tpm_op_stats::operation)
      .def_readonly("count", &tpm::tpm_op_stats::count)
      .def_readonly("failures", &tpm::tpm_op_stats::failures)
      .def_property_readonly("total_seconds",
                             [](const tpm::tpm_op_stats& s) { return std::chrono::duration<double>(s.total_time).count(); })
      .def_property_readonly("mean_ms", &tpm::tpm_op_stats::mean_ms)
      .def_property_readonly("latency_buckets",
                             [](const tpm::tpm_op_stats& s) {
                               // [(upper bound in seconds or inf, count in that bucket)], not cumulative
                               py::list out;
                               for (std::size_t i = 0; i < s.latency_buckets.size(); ++i) {
                                 const double le = i < tpm::tpm_latency_bounds.size()
                                                       ? std::chrono::duration<double>(tpm::tpm_latency_bounds[i]).count()
                                                       : std::numeric_limits<double>::infinity();
                                 out.append(py::make_tuple(le, s.latency_buckets[i]));
                               }
                               return out;
                             })
      .def("__repr__", [](const tpm::tpm_op_stats& s) {
        return "<agentbus.TpmOperation " + s.operation + " count=" + std::to_string(s.count) +
               " failures=" + std::to_string(s.failures) + ">";
      });

  py::class_<agent_stats>(m, "Stats", "The agent's counters (agentbus::agent_stats).")
      .def_readonly("sent", &agent_stats::sent)
      .def_readonly("received", &agent_stats::received)
      .def_readonly("rejected_at_receive", &agent_stats::rejected_at_receive)
      .def_readonly("refused_by_broker", &agent_stats::refused_by_broker)
      .def_readonly("sessions", &agent_stats::sessions)
      .def_readonly("rekeys", &agent_stats::rekeys)
      .def_readonly("reenrolments", &agent_stats::reenrolments)
      .def_readonly("hop_rekeys", &agent_stats::hop_rekeys)
      .def_readonly("tpm_ecdh_sessions", &agent_stats::tpm_ecdh_sessions)
      .def_readonly("batch_roots", &agent_stats::batch_roots)
      .def_readonly("batched_envelopes", &agent_stats::batched_envelopes)
      .def_readonly("failed_at_sender", &agent_stats::failed_at_sender)
      .def_readonly("static_ecdh_failures", &agent_stats::static_ecdh_failures)
      .def_readonly("dispatch_dropped", &agent_stats::dispatch_dropped)
      .def_readonly("unaddressed_after_subscribing", &agent_stats::unaddressed_after_subscribing)
      .def_readonly("offers_refused", &agent_stats::offers_refused)
      .def_readonly("tpm_operations", &agent_stats::tpm_operations);

  py::class_<core>(m, "_Agent", "The enrolled agent behind agentbus.Agent.")
      .def(py::init<agent_options, std::shared_ptr<identity_key>, std::shared_ptr<const policy>, py::object>(),
           py::arg("options"), py::arg("identity"), py::arg("policy"), py::arg("sink"))
      .def_property_readonly("name", &core::name)
      .def_property_readonly("closed", &core::closed)
      .def("send", &core::send, py::arg("to"), py::arg("content_type"), py::arg("payload"))
      .def("publish", &core::publish, py::arg("topic"), py::arg("content_type"), py::arg("payload"))
      .def("subscribe", &core::subscribe, py::arg("topic"))
      .def("queue_subscribe", &core::queue_subscribe, py::arg("topic"), py::arg("group"))
      .def("unsubscribe", &core::unsubscribe, py::arg("topic"))
      .def("request", &core::request, py::arg("to"), py::arg("content_type"), py::arg("payload"), py::arg("timeout"))
      .def("stats", &core::stats)
      .def("close", &core::close);
}

}  // namespace agentbus::python
