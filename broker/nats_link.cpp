#include "nats_link.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "admin_protocol.hpp"  // now_unix_ms
#include "nats_nkey.hpp"
#include "util/log_limiter.hpp"

namespace agentbus::broker {
namespace fw = federation_wire;
using steady = std::chrono::steady_clock;

namespace {

// RAII for libnats's handles.
struct options_free { void operator()(natsOptions* p) const { natsOptions_Destroy(p); } };
struct connection_free { void operator()(natsConnection* p) const { natsConnection_Destroy(p); } };
struct subscription_free { void operator()(natsSubscription* p) const { natsSubscription_Destroy(p); } };
struct js_free { void operator()(jsCtx* p) const { jsCtx_Destroy(p); } };
struct kv_free { void operator()(kvStore* p) const { kvStore_Destroy(p); } };
struct watcher_free { void operator()(kvWatcher* p) const { kvWatcher_Destroy(p); } };
struct entry_free { void operator()(kvEntry* p) const { kvEntry_Destroy(p); } };
using options_ptr = std::unique_ptr<natsOptions, options_free>;
using connection_ptr = std::unique_ptr<natsConnection, connection_free>;
using subscription_ptr = std::unique_ptr<natsSubscription, subscription_free>;
using js_ptr = std::unique_ptr<jsCtx, js_free>;
using kv_ptr = std::unique_ptr<kvStore, kv_free>;
using watcher_ptr = std::unique_ptr<kvWatcher, watcher_free>;
using entry_ptr = std::unique_ptr<kvEntry, entry_free>;

void check(natsStatus s, const std::string& what) {
  if (s != NATS_OK) throw std::runtime_error("NATS: " + what + ": " + natsStatus_GetText(s));
}

std::string last_error(natsStatus s) {
  const char* text = nats_GetLastError(nullptr);
  return std::string(natsStatus_GetText(s)) + (text && *text ? std::string(" (") + text + ")" : "");
}

}  // namespace

struct nats_link::impl {
  broker_config cfg;
  policy pol;  // a copy: the watcher thread resolves suites; a reload changes the event loop's
  std::shared_ptr<identity_key> identity;
  metrics& stats;
  int wake_fd = -1;

  std::mutex in_mu;  // leaf: guards inbound, inbound_bytes
  std::vector<event> inbound;
  std::size_t inbound_bytes = 0;

  options_ptr opts;
  connection_ptr nc;
  subscription_ptr inbox_sub;
  std::atomic<bool> is_connected{false};
  std::atomic<bool> stopping{false};

  // The writer's queue (leaf lock): the latest record per key; writes coalesce.
  struct write_job {
    bytes body;
    std::string name;            // agent records: whose
    std::string take_over_from;  // agent records: see write_agent
    bool agent = false;
  };
  std::mutex w_mu;
  std::condition_variable w_cv;
  std::map<std::string, write_job> jobs;

  // The bucket, opened by the writer; the watcher waits for it.
  std::mutex kv_mu;
  std::condition_variable kv_cv;
  js_ptr js;
  kv_ptr kv;

  std::thread writer, watcher, beater;
  util::log_limiter limiter;

  impl(const broker_config& c, const policy& p, std::shared_ptr<identity_key> id, metrics& m)
      : cfg(c), pol(p), identity(std::move(id)), stats(m) {}

  // push queues an event for the event loop. Only messages from other brokers'
  // traffic are dropped when the queue is full (droppable: their senders' brokers time
  // them out); directory updates, lost claims and link changes never are (the
  // watcher does not read them again, and they are bounded by the bucket's size).
  void push(event e, std::size_t bytes_held, bool droppable = false) {
    bool was_empty = false;
    {
      std::lock_guard lock(in_mu);
      if (droppable && (inbound.size() >= kMaxInboundMessages || inbound_bytes + bytes_held > kMaxInboundBytes)) {
        stats.increment("federation_inbound_dropped_total");
        if (limiter.allow("inbound_full"))
          spdlog::error("federation: inbound queue full ({} messages, {} MiB): a message from NATS was dropped",
                        inbound.size(), inbound_bytes >> 20);
        return;
      }
      was_empty = inbound.empty();
      inbound.push_back(std::move(e));
      inbound_bytes += bytes_held;
    }
    // One wake-up per batch: the event loop takes the whole queue at once.
    if (!was_empty) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
  }

  // ---- libnats callbacks (its threads) ----
  static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<impl*>(closure);
    const auto* data = reinterpret_cast<const std::uint8_t*>(natsMsg_GetData(msg));
    const int len = natsMsg_GetDataLength(msg);
    inbox_message m{natsMsg_GetSubject(msg), bytes(data, data + (len > 0 ? len : 0))};
    natsMsg_Destroy(msg);
    const std::size_t held = m.data.size() + m.subject.size();
    self->push(std::move(m), held, true);
  }
  // Shutdown: libnats calls these from its own threads after natsConnection_Close and
  // natsSubscription_Unsubscribe return; the destructor waits for both, so that no
  // callback runs on a freed impl.
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool closed = false, sub_done = false;
  static void on_closed(natsConnection*, void* closure) {
    auto* self = static_cast<impl*>(closure);
    if (!self->stopping)
      spdlog::critical("federation: the NATS connection is closed for good (credentials or certificate refused, or "
                       "reconnects exhausted); this broker runs ALONE until restarted");
    self->is_connected = false;
    std::lock_guard lock(self->done_mu);
    self->closed = true;
    self->done_cv.notify_all();
  }
  static void on_sub_complete(void* closure) {
    auto* self = static_cast<impl*>(closure);
    std::lock_guard lock(self->done_mu);
    self->sub_done = true;
    self->done_cv.notify_all();
  }
  static void on_disconnected(natsConnection*, void* closure) {
    auto* self = static_cast<impl*>(closure);
    self->is_connected = false;
    spdlog::warn("federation: disconnected from NATS; reconnecting (remote agents are unreachable meanwhile)");
    self->push(link_state{false}, 0);
  }
  static void on_connected(natsConnection*, void* closure) {
    auto* self = static_cast<impl*>(closure);
    self->is_connected = true;
    spdlog::info("federation: connected to NATS");
    self->push(link_state{true}, 0);
    self->kv_cv.notify_all();
  }
  static void on_error(natsConnection*, natsSubscription* sub, natsStatus err, void* closure) {
    auto* self = static_cast<impl*>(closure);
    if (err == NATS_SLOW_CONSUMER) {
      std::int64_t dropped = 0;
      if (sub != nullptr) natsSubscription_GetDropped(sub, &dropped);
      self->stats.increment("federation_inbound_dropped_total");
      if (self->limiter.allow("slow_consumer"))
        spdlog::error("federation: slow consumer: NATS dropped messages for this broker ({} so far)", dropped);
      return;
    }
    if (self->limiter.allow("nats_error")) spdlog::error("federation: NATS error: {}", natsStatus_GetText(err));
  }

  void connect() {
    natsOptions* raw = nullptr;
    check(natsOptions_Create(&raw), "options");
    opts.reset(raw);
    std::vector<const char*> urls;
    for (const auto& u : cfg.federation_servers) urls.push_back(u.c_str());
    check(natsOptions_SetServers(opts.get(), urls.data(), static_cast<int>(urls.size())), "servers");
    check(natsOptions_SetName(opts.get(), ("agentbus-broker " + cfg.name).c_str()), "name");
    check(natsOptions_SetMaxReconnect(opts.get(), -1), "max reconnect");
    check(natsOptions_SetReconnectWait(opts.get(), 250), "reconnect wait");
    check(natsOptions_SetReconnectBufSize(opts.get(), 8 << 20), "reconnect buffer");
    check(natsOptions_SetTimeout(opts.get(), 2000), "timeout");
    check(natsOptions_SetPingInterval(opts.get(), 1000), "ping interval");
    check(natsOptions_SetMaxPingsOut(opts.get(), 3), "max pings out");
    check(natsOptions_SetDisconnectedCB(opts.get(), on_disconnected, this), "disconnected callback");
    check(natsOptions_SetReconnectedCB(opts.get(), on_connected, this), "reconnected callback");
    check(natsOptions_SetErrorHandler(opts.get(), on_error, this), "error handler");
    check(natsOptions_SetClosedCB(opts.get(), on_closed, this), "closed callback");
    check(natsOptions_SetRetryOnFailedConnect(opts.get(), true, on_connected, this), "retry on failed connect");
    if (!cfg.federation_nkey_seed_file.empty()) {
      const std::string pub = user_nkey_public_from_seed_file(cfg.federation_nkey_seed_file);
      check(natsOptions_SetNKeyFromSeed(opts.get(), pub.c_str(), cfg.federation_nkey_seed_file.c_str()), "NKEY");
      spdlog::info("federation: authenticating to NATS with NKEY {}", pub);
    }
    if (!cfg.federation_tls_ca.empty()) {
      check(natsOptions_SetSecure(opts.get(), true), "TLS");
      check(natsOptions_LoadCATrustedCertificates(opts.get(), cfg.federation_tls_ca.c_str()), "TLS CA");
    }
    if (!cfg.federation_tls_cert.empty())
      check(natsOptions_LoadCertificatesChain(opts.get(), cfg.federation_tls_cert.c_str(), cfg.federation_tls_key.c_str()),
            "TLS client certificate");
    if (cfg.federation_nkey_seed_file.empty() && cfg.federation_tls_cert.empty())
      spdlog::critical("[federation] insecure_no_auth: this broker connects to NATS WITHOUT credentials; anyone who "
                       "reaches the NATS cluster can publish into brokers' inboxes. Loopback tests only.");
    natsConnection* conn = nullptr;
    const natsStatus s = natsConnection_Connect(&conn, opts.get());
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) return given_up("connect: " + last_error(s));
    nc.reset(conn);
    if (s == NATS_OK) {
      is_connected = true;
      push(link_state{true}, 0);
    } else {
      spdlog::warn("federation: NATS not reachable yet ({}); retrying in the background", cfg.federation_servers[0]);
    }
    natsSubscription* sub = nullptr;
    // The first attempt may already have failed for good (a certificate or credential
    // NATS refuses closes the connection): then the broker runs alone.
    if (const natsStatus st =
            natsConnection_Subscribe(&sub, nc.get(), fw::inbox(cfg.federation_prefix, cfg.name).c_str(), on_message, this);
        st != NATS_OK)
      return given_up("subscribe to the inbox: " + last_error(st));
    inbox_sub.reset(sub);
    check(natsSubscription_SetOnCompleteCB(sub, on_sub_complete, this), "subscription completion callback");
    check(natsSubscription_SetPendingLimits(sub, static_cast<int>(kMaxInboundMessages), static_cast<int>(kMaxInboundBytes)),
          "pending limits");
  }

  // given_up: the connection cannot be made (a TLS or credential failure closes it for
  // good). The broker goes on serving its own agents alone, loudly; the admin view and
  // federation_connected say so; a restart tries again.
  void given_up(const std::string& why) {
    spdlog::critical("federation: NATS refused this broker ({}); it runs ALONE until restarted: check [federation] "
                     "credentials (nkey_seed_file, tls_cert, tls_key, tls_ca) and the servers' authorization",
                     why);
    is_connected = false;
  }

  // ---- the directory writer ----
  bool open_bucket() {
    std::unique_lock lock(kv_mu);
    if (kv) return true;
    if (!is_connected) return false;
    jsCtx* j = nullptr;
    if (natsConnection_JetStream(&j, nc.get(), nullptr) != NATS_OK) return false;
    js_ptr js_owned(j);
    kvStore* store = nullptr;
    natsStatus s = js_KeyValue(&store, j, cfg.federation_bucket.c_str());
    if (s == NATS_NOT_FOUND) {
      kvConfig kc;
      kvConfig_Init(&kc);
      kc.Bucket = cfg.federation_bucket.c_str();
      kc.Description = "agentbus federation directory (schemas/federation.md)";
      kc.History = 1;
      kc.Replicas = cfg.federation_replicas;
      kc.StorageType = js_FileStorage;
      kc.MaxValueSize = static_cast<int32_t>(fw::kMaxRecordBytes);
      s = js_CreateKeyValue(&store, j, &kc);
      if (s != NATS_OK) s = js_KeyValue(&store, j, cfg.federation_bucket.c_str());  // another broker made it meanwhile
    }
    if (s != NATS_OK) {
      if (limiter.allow("bucket")) spdlog::warn("federation: directory bucket {} not available yet: {}", cfg.federation_bucket, last_error(s));
      return false;
    }
    js = std::move(js_owned);
    kv.reset(store);
    spdlog::info("federation: directory bucket {} open", cfg.federation_bucket);
    kv_cv.notify_all();
    return true;
  }

  std::optional<bytes> sign_and_seal(const bytes& body) {
    const auto sig = identity->sign_message(fw::signing_input(body));
    if (!sig) {
      if (limiter.allow("sign")) spdlog::error("federation: signing a directory record failed: {}", sig.error().to_string());
      return std::nullopt;
    }
    return fw::seal(body, *sig);
  }

  void heartbeat() {
    fw::broker_record b;
    b.writer = cfg.name;
    b.written_ms = static_cast<std::uint64_t>(now_unix_ms());
    b.suite = identity->key_suite().name;
    b.identity_der = identity->public_key().der();
    const auto sealed = sign_and_seal(fw::encode_body(b));
    if (!sealed) return;
    std::uint64_t rev = 0;
    const natsStatus s = kvStore_Put(&rev, kv.get(), fw::broker_key(cfg.name).c_str(), sealed->data(), static_cast<int>(sealed->size()));
    if (s != NATS_OK) {
      stats.increment("federation_directory_write_failures_total");
      if (limiter.allow("heartbeat")) spdlog::warn("federation: heartbeat not written: {}", last_error(s));
    }
  }

  // write_one: true when done (written, or lost to another broker), false to retry
  // (NATS, JetStream or the TPM failed: the job is kept).
  bool write_one(const std::string& key, const write_job& job) {
    const auto sealed = sign_and_seal(job.body);
    if (!sealed) return false;
    const void* data = sealed->data();
    const int len = static_cast<int>(sealed->size());
    std::uint64_t rev = 0;
    if (!job.agent) return kvStore_Put(&rev, kv.get(), key.c_str(), data, len) == NATS_OK;
    // Compare-and-set: replace only this broker's record, an offline one, or one of a
    // broker the event loop found down; the first of two concurrent claims wins.
    for (int attempt = 0; attempt < 4; ++attempt) {
      kvEntry* raw = nullptr;
      natsStatus s = kvStore_Get(&raw, kv.get(), key.c_str());
      entry_ptr current(raw);
      if (s == NATS_NOT_FOUND) {
        if (kvStore_Create(&rev, kv.get(), key.c_str(), data, len) == NATS_OK) return true;
        continue;
      }
      if (s != NATS_OK) return false;
      const auto* v = static_cast<const std::uint8_t*>(kvEntry_Value(current.get()));
      const auto opened = fw::open_record(byte_view(v, static_cast<std::size_t>(kvEntry_ValueLen(current.get()))));
      if (opened && opened->writer != cfg.name && opened->writer != job.take_over_from) {
        const auto held = fw::decode_agent(opened->body);
        if (held && held->online) {
          push(claim_lost{job.name, opened->writer}, 0);
          return true;
        }
      }
      if (kvStore_Update(&rev, kv.get(), key.c_str(), data, len, kvEntry_Revision(current.get())) == NATS_OK) return true;
    }
    return false;
  }

  void writer_loop() {
    while (!stopping) {
      if (!open_bucket()) {
        std::unique_lock lock(kv_mu);
        kv_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping.load(); });
        continue;
      }
      std::string key;
      write_job job;
      {
        std::unique_lock lock(w_mu);
        w_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping.load() || !jobs.empty(); });
        if (stopping || jobs.empty()) continue;
        auto it = jobs.begin();
        key = it->first;
        job = std::move(it->second);
        jobs.erase(it);
      }
      if (!write_one(key, job)) {
        stats.increment("federation_directory_write_failures_total");
        if (limiter.allow("write")) spdlog::warn("federation: directory write of {} failed; retrying", key);
        std::unique_lock lock(w_mu);
        jobs.try_emplace(key, std::move(job));  // unless a newer one came meanwhile
        w_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping.load(); });
      }
    }
  }

  // heartbeat_loop writes this broker's record every beat, on a thread of its own: a
  // record write retrying against a slow NATS never holds a heartbeat back past
  // stale_after_ms (other brokers would presume this one down).
  void heartbeat_loop() {
    const auto beat = std::chrono::milliseconds(std::min(1000, cfg.federation_stale_after_ms / 4));
    while (!stopping) {
      std::unique_lock lock(kv_mu);
      if (!kv) {
        kv_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping.load() || kv != nullptr; });
        continue;
      }
      lock.unlock();
      heartbeat();
      lock.lock();
      kv_cv.wait_for(lock, beat, [&] { return stopping.load(); });
    }
  }

  // ---- the directory watcher ----
  struct trusted_broker {
    crypto::public_key key;
    const suite* key_suite;
  };
  std::map<std::string, trusted_broker, std::less<>> trusted;  // watcher thread only

  // trust_broker verifies a broker record (self-signed, key matching the configured
  // fingerprint) and remembers its key.
  bool trust_broker(const fw::opened_record& o, const fw::broker_record& b) {
    const auto want = cfg.federation_brokers.find(b.writer);
    if (want == cfg.federation_brokers.end()) return false;
    auto key = crypto::public_key::from_der(b.identity_der);
    const suite* s = pol.find_suite(b.suite);
    if (!key || s == nullptr || key->fingerprint_hex() != want->second) return false;
    if (!fw::verify_record(o, *key, *s)) return false;
    trusted.insert_or_assign(b.writer, trusted_broker{std::move(*key), s});
    return true;
  }

  const trusted_broker* writer_key(const std::string& writer) {
    if (auto it = trusted.find(writer); it != trusted.end()) return &it->second;
    // Not seen yet (its heartbeat comes later in the bucket): ask for it.
    kvEntry* raw = nullptr;
    if (kvStore_Get(&raw, kv.get(), fw::broker_key(writer).c_str()) != NATS_OK) return nullptr;
    entry_ptr e(raw);
    const auto* v = static_cast<const std::uint8_t*>(kvEntry_Value(e.get()));
    const auto o = fw::open_record(byte_view(v, static_cast<std::size_t>(kvEntry_ValueLen(e.get()))));
    if (!o || o->kind != "broker") return nullptr;
    const auto b = fw::decode_broker(o->body);
    if (!b || b->writer != writer || !trust_broker(*o, *b)) return nullptr;
    return &trusted.find(writer)->second;
  }

  void reject(const std::string& key, const std::string& why) {
    stats.increment("federation_directory_rejected_total");
    if (limiter.allow("directory_rejected")) spdlog::warn("federation: directory record {} ignored: {}", key, why);
  }

  void apply_entry(kvEntry* e) {
    const std::string key = kvEntry_Key(e);
    directory_update u;
    u.key = key;
    u.revision = kvEntry_Revision(e);
    if (kvEntry_Operation(e) != kvOp_Put) {
      u.deleted = true;
      return push(std::move(u), key.size());
    }
    const auto* v = static_cast<const std::uint8_t*>(kvEntry_Value(e));
    const byte_view value(v, static_cast<std::size_t>(kvEntry_ValueLen(e)));
    auto o = fw::open_record(value);
    if (!o) return reject(key, o.error().to_string());
    if (o->kind == "broker") {
      auto b = fw::decode_broker(o->body);
      if (!b) return reject(key, b.error().to_string());
      if (key != fw::broker_key(b->writer) || b->writer != o->writer) return reject(key, "key and record disagree");
      if (!trust_broker(*o, *b)) return reject(key, "broker '" + b->writer + "' is not in [federation] brokers, or its key or signature does not match");
      u.record = std::move(*b);
      return push(std::move(u), value.size());
    }
    const trusted_broker* w = writer_key(o->writer);
    if (w == nullptr) return reject(key, "written by '" + o->writer + "', not a broker of the federation (or its record is missing)");
    if (!fw::verify_record(*o, w->key, *w->key_suite)) return reject(key, "signature of '" + o->writer + "' does not verify");
    if (o->kind == "agent") {
      auto a = fw::decode_agent(o->body);
      if (!a) return reject(key, a.error().to_string());
      if (key != fw::agent_key(a->name) || a->writer != o->writer) return reject(key, "key and record disagree");
      u.record = std::move(*a);
    } else {
      auto r = fw::decode_revocation(o->body);
      if (!r) return reject(key, r.error().to_string());
      if (key != fw::revocation_key(r->name) || r->writer != o->writer) return reject(key, "key and record disagree");
      u.record = std::move(*r);
    }
    push(std::move(u), value.size());
  }

  void watcher_loop() {
    while (!stopping) {
      {
        std::unique_lock lock(kv_mu);
        kv_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping.load() || kv != nullptr; });
        if (stopping || !kv) continue;
      }
      kvWatcher* raw = nullptr;
      if (kvStore_WatchAll(&raw, kv.get(), nullptr) != NATS_OK) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        continue;
      }
      watcher_ptr w(raw);
      while (!stopping) {
        kvEntry* e = nullptr;
        const natsStatus s = kvWatcher_Next(&e, w.get(), 200);
        if (s == NATS_TIMEOUT) continue;
        if (s != NATS_OK) {
          if (limiter.allow("watch")) spdlog::warn("federation: directory watch interrupted ({}); watching again", last_error(s));
          break;
        }
        if (e == nullptr) continue;  // the end of the initial values
        entry_ptr owned(e);
        try {
          apply_entry(e);
        } catch (const std::exception& ex) {
          stats.increment("internal_errors_total");
          spdlog::error("federation: directory entry: {}", ex.what());
        }
      }
      kvWatcher_Stop(w.get());
    }
  }
};

nats_link::nats_link(const broker_config& cfg, const policy& pol, std::shared_ptr<identity_key> identity, metrics& m)
    : impl_(std::make_unique<impl>(cfg, pol, std::move(identity), m)) {
  impl& d = *impl_;
  d.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d.wake_fd < 0) throw std::runtime_error("eventfd failed");
  d.stats.set_gauge("federation_connected", {}, 0);
  d.connect();
  d.writer = std::thread([&d] { d.writer_loop(); });
  d.watcher = std::thread([&d] { d.watcher_loop(); });
  d.beater = std::thread([&d] { d.heartbeat_loop(); });
}

nats_link::~nats_link() {
  impl& d = *impl_;
  d.stopping = true;
  d.w_cv.notify_all();
  d.kv_cv.notify_all();
  if (d.writer.joinable()) d.writer.join();
  if (d.watcher.joinable()) d.watcher.join();
  if (d.beater.joinable()) d.beater.join();
  // The subscription and the connection close, and libnats's last callbacks have run,
  // before their target goes.
  const bool had_sub = d.inbox_sub != nullptr;
  if (had_sub) natsSubscription_Unsubscribe(d.inbox_sub.get());
  d.kv.reset();
  d.js.reset();
  if (d.nc) natsConnection_Close(d.nc.get());
  {
    std::unique_lock lock(d.done_mu);
    if (!d.done_cv.wait_for(lock, std::chrono::seconds(5), [&] { return (!had_sub || d.sub_done) && (!d.nc || d.closed); }))
      spdlog::warn("federation: NATS callbacks did not finish within 5 s of closing");
  }
  d.inbox_sub.reset();
  d.nc.reset();
  d.opts.reset();
  ::close(d.wake_fd);
}

int nats_link::fd() const noexcept { return impl_->wake_fd; }

std::vector<nats_link::event> nats_link::take() {
  impl& d = *impl_;
  std::vector<event> out;
  std::lock_guard lock(d.in_mu);
  // Read under the lock: a push that finds the queue empty after this swap writes the
  // eventfd again, so no wake-up is lost.
  std::uint64_t n = 0;
  [[maybe_unused]] const auto r = ::read(d.wake_fd, &n, sizeof n);
  out.swap(d.inbound);
  d.inbound_bytes = 0;
  return out;
}

status nats_link::publish(const std::string& subject, byte_view data) {
  if (!impl_->nc) return {status_code::not_deliverable, "this broker is not connected to the federation's NATS"};
  const natsStatus s = natsConnection_Publish(impl_->nc.get(), subject.c_str(), data.data(), static_cast<int>(data.size()));
  if (s == NATS_OK) return {};
  impl_->stats.increment("federation_publish_failures_total");
  if (s == NATS_MAX_PAYLOAD) return {status_code::too_large, "over the NATS server's max_payload"};
  return {status_code::overloaded, std::string("the federation link could not take it: ") + natsStatus_GetText(s)};
}

void nats_link::write_agent(federation_wire::agent_record r, std::string take_over_from) {
  impl& d = *impl_;
  r.writer = d.cfg.name;
  r.written_ms = now_unix_ms();
  impl::write_job job{fw::encode_body(r), r.name, std::move(take_over_from), true};
  {
    std::lock_guard lock(d.w_mu);
    d.jobs.insert_or_assign(fw::agent_key(r.name), std::move(job));
  }
  d.w_cv.notify_one();
}

void nats_link::write_revocation(federation_wire::revocation_record r) {
  impl& d = *impl_;
  r.writer = d.cfg.name;
  r.written_ms = now_unix_ms();
  impl::write_job job{fw::encode_body(r), r.name, {}, false};
  {
    std::lock_guard lock(d.w_mu);
    d.jobs.insert_or_assign(fw::revocation_key(r.name), std::move(job));
  }
  d.w_cv.notify_one();
}

bool nats_link::connected() const noexcept { return impl_->is_connected; }

}  // namespace agentbus::broker
