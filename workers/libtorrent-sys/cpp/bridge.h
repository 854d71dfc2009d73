// Revaer's C++ side of the libtorrent bridge (declarations only).
//
// This header is included by the cxx-generated code, so it must stay light:
// it names no libtorrent type (the session lives behind a pimpl in
// bridge.cpp, the only translation unit that includes libtorrent headers).
//
// Error contract: every function declared here is exposed to Rust as
// returning `Result`. Each body runs inside `guarded()` (bridge.cpp), which
// catches *every* exception and rethrows exactly one `std::runtime_error`
// whose what() is "<kind>\x1f<category>\x1f<message>"; cxx turns it into
// `Err(cxx::Exception)` and src/error.rs parses it into `Error`.
#pragma once

#include "rust/cxx.h"

#include <cstdint>
#include <memory>

namespace revaer {
namespace ltb {

// Shared structs, defined by the cxx-generated header (src/ffi.rs).
struct FfiSettings;
struct FfiAddParams;
struct FfiId;
struct FfiEndpoint;
struct FfiLimits;
struct FfiStatus;
struct FfiTorrentInfo;
struct FfiMagnet;
struct FfiPeer;
struct FfiTracker;
struct FfiAlert;
struct FfiMetric;
struct FfiCreateOptions;

// Owns one lt::session. All methods are const: lt::session is internally
// synchronised (every call is posted to its network thread), so the object
// may be shared between threads. pop_alerts() additionally holds a mutex,
// because alert pointers stay valid only until the next pop_alerts().
class BridgeSession {
public:
  struct Impl;
  explicit BridgeSession(std::unique_ptr<Impl> impl);
  ~BridgeSession();
  BridgeSession(BridgeSession const &) = delete;
  BridgeSession &operator=(BridgeSession const &) = delete;

  void apply_settings(FfiSettings const &settings) const;
  FfiSettings current_settings() const;
  std::uint16_t listen_port() const;
  void pause_session() const;
  void resume_session() const;
  bool session_paused() const;
  void reopen_network_sockets() const;
  FfiId add_torrent(FfiAddParams const &params,
                    rust::Slice<std::uint8_t const> source) const;
  void remove_torrent(FfiId const &id, bool delete_files) const;
  void pause(FfiId const &id) const;
  void resume(FfiId const &id) const;
  void force_reannounce(FfiId const &id) const;
  void force_recheck(FfiId const &id) const;
  void flush_cache(FfiId const &id) const;
  void set_sequential(FfiId const &id, bool on) const;
  void set_limits(FfiId const &id, std::int32_t download,
                  std::int32_t upload) const;
  FfiLimits limits(FfiId const &id) const;
  void set_file_priorities(FfiId const &id,
                           rust::Slice<std::uint8_t const> priorities) const;
  rust::Vec<std::uint8_t> file_priorities(FfiId const &id) const;
  rust::Vec<std::int64_t> file_progress(FfiId const &id) const;
  rust::Vec<FfiPeer> peers(FfiId const &id) const;
  rust::Vec<FfiTracker> trackers(FfiId const &id) const;
  FfiStatus status(FfiId const &id) const;
  FfiTorrentInfo torrent_info(FfiId const &id) const;
  rust::Vec<FfiId> torrents() const;
  void post_torrent_updates() const;
  void post_session_stats() const;
  void save_resume_data(FfiId const &id) const;
  void connect_peer(FfiId const &id, FfiEndpoint const &peer) const;
  bool wait_for_alert(std::int64_t timeout_ms) const;
  rust::Vec<FfiAlert> pop_alerts() const;

private:
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<BridgeSession> new_session(FfiSettings const &settings);
rust::Vec<FfiMetric> session_stats_metrics();
FfiTorrentInfo parse_torrent(rust::Slice<std::uint8_t const> bytes);
FfiMagnet parse_magnet(rust::Str uri);
rust::Vec<std::uint8_t> create_torrent(FfiCreateOptions const &options);

} // namespace ltb
} // namespace revaer
