// Revaer's C++ side of the libtorrent bridge: the only translation unit that
// includes libtorrent headers (each such TU costs ~30 s to compile).
//
// Rules kept throughout this file:
// - Every entry point runs its body inside guarded(): nothing escapes but
//   one BridgeError (std::runtime_error) whose what() is
//   "<kind>\x1f<category>\x1f<message>". src/error.rs decodes it.
// - Every libtorrent error_code output is checked and turned into a
//   BridgeError.
// - Strings handed to Rust go through rust::String::lossy (libtorrent may
//   hold non-UTF-8 names; a strict conversion would throw).
// - No libtorrent object is returned to Rust: only plain shared structs and
//   the BridgeSession that Rust owns through a UniquePtr.

#include "revaer-libtorrent-sys/cpp/bridge.h"
#include "revaer-libtorrent-sys/src/ffi.rs.h"

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/address.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/announce_entry.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/magnet_uri.hpp>
#include <libtorrent/operations.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/session_stats.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/socket.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <libtorrent/write_resume_data.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lt = libtorrent;

namespace revaer {
namespace ltb {

// A torrent known by its truncated v2 hash although it may have a v1 hash
// (see id_in()).
struct V2Id {
  // The torrent is in the session (or being added).
  bool live = false;
  // Alerts still to come about it after remove_torrent(): the removal, and
  // the deletion of its files when asked for. They carry its id too.
  int departing = 0;
};

// Keyed by the full v2 info-hash (which such a torrent always has).
using V2Ids = std::map<lt::sha256_hash, V2Id>;

struct BridgeSession::Impl {
  std::unique_ptr<lt::session> ses;
  // Serialises pop_alerts(): alert pointers are valid only until the next
  // pop_alerts() call, and we read them while converting.
  std::mutex alert_mutex;
  // Serialises add_torrent(): its duplicate check, the id bookkeeping and
  // the add itself happen as one step.
  std::mutex add_mutex;
  // Guards v2_ids. Never held while waiting on libtorrent's network
  // thread, except by pop_alerts() around alert conversion (which reads
  // only alert memory and handle fields).
  std::mutex ids_mutex;
  V2Ids v2_ids;

  // The torrent's id (id_in()), taking ids_mutex.
  FfiId id(lt::info_hash_t const &ih);
};

namespace {

// ---------------------------------------------------------------- errors --

// The single exception type that leaves this file.
struct BridgeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Error kinds understood by src/error.rs.
constexpr char const *kCxx = "cxx";
constexpr char const *kLibtorrent = "libtorrent";
constexpr char const *kNotFound = "not_found";
constexpr char const *kDuplicate = "duplicate";
constexpr char const *kInvalidTorrent = "invalid_torrent";
constexpr char const *kInvalidMagnet = "invalid_magnet";
constexpr char const *kInvalidResume = "invalid_resume";
constexpr char const *kInvalidArgument = "invalid_argument";

[[noreturn]] void fail(char const *kind, std::string const &category,
                       std::string const &message) {
  std::string what;
  what.reserve(32 + category.size() + message.size());
  what += kind;
  what += '\x1f';
  what += category;
  what += '\x1f';
  what += message;
  throw BridgeError(what);
}

[[noreturn]] void fail_code(char const *kind, lt::error_code const &ec) {
  fail(kind, ec.category().name(), ec.message());
}

bool is_code(lt::error_code const &ec, lt::errors::error_code_enum e) {
  return ec == lt::error_code(e, lt::libtorrent_category());
}

// Runs `body`, translating every exception into one BridgeError.
// `op` names the entry point in messages of unexpected exceptions.
template <typename F>
auto guarded(char const *op, F &&body) -> decltype(body()) {
  try {
    return body();
  } catch (BridgeError const &) {
    throw;
  } catch (lt::system_error const &e) {
    if (is_code(e.code(), lt::errors::invalid_torrent_handle)) {
      fail(kNotFound, e.code().category().name(), e.code().message());
    }
    fail_code(kLibtorrent, e.code());
  } catch (std::bad_alloc const &) {
    fail(kCxx, "", std::string(op) + ": out of memory");
  } catch (std::exception const &e) {
    fail(kCxx, "", std::string(op) + ": " + e.what());
  } catch (...) {
    fail(kCxx, "", std::string(op) + ": unknown C++ exception");
  }
}

// ------------------------------------------------------------ conversions --

rust::String lossy(std::string const &s) { return rust::String::lossy(s); }

rust::String lossy(char const *s) {
  return s == nullptr ? rust::String() : rust::String::lossy(s);
}

std::string to_hex(char const *data, std::size_t len) {
  static char const digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (std::size_t i = 0; i < len; ++i) {
    auto const byte = static_cast<unsigned char>(data[i]);
    out += digits[byte >> 4];
    out += digits[byte & 0x0f];
  }
  return out;
}

FfiId to_id(lt::sha1_hash const &h) {
  FfiId id{};
  std::memcpy(id.bytes.data(), h.data(), id.bytes.size());
  return id;
}

// The default id of a set of info-hashes: the v1 info-hash, or the v2 hash
// truncated to 20 bytes when there is no v1 hash (v2-only torrents, and
// `urn:btmh:` magnets before their metadata). The session indexes every
// torrent under both its v1 hash and its truncated v2 hash, so
// find_torrent() accepts either.
FfiId id_of(lt::info_hash_t const &ih) {
  if (ih.has_v1()) {
    return to_id(ih.v1);
  }
  if (ih.has_v2()) {
    return to_id(ih.get(lt::protocol_version::V2));
  }
  return FfiId{};
}

// The id of a torrent in the session. The rule: a torrent keeps the id it
// was added under for its whole life, in every status, alert and list.
// That is id_of() of what the add knew, or the id the add asked for
// (FfiAddParams::id: resume data re-added under the id it was stored
// under). id_of() alone is not enough: when the metadata of a v2
// (`urn:btmh:`) magnet shows a hybrid torrent, libtorrent's info_hashes
// gain the v1 hash and id_of() would switch to it. So the torrents added
// under their truncated v2 hash have an entry in `ids` (see V2Id) and keep
// it. The caller holds Impl::ids_mutex.
FfiId id_in(V2Ids const &ids, lt::info_hash_t const &ih) {
  if (ih.has_v2() && ids.count(ih.v2) != 0) {
    return to_id(ih.get(lt::protocol_version::V2));
  }
  return id_of(ih);
}

lt::info_hash_t hashes_of(lt::add_torrent_params const &atp) {
  return atp.ti ? atp.ti->info_hashes() : atp.info_hashes;
}

lt::sha1_hash to_sha1(FfiId const &id) {
  lt::sha1_hash h;
  std::memcpy(h.data(), id.bytes.data(), id.bytes.size());
  return h;
}

std::string hex_of(FfiId const &id) {
  return to_hex(reinterpret_cast<char const *>(id.bytes.data()),
                id.bytes.size());
}

lt::span<char const> as_span(rust::Slice<std::uint8_t const> bytes) {
  return {reinterpret_cast<char const *>(bytes.data()),
          static_cast<std::ptrdiff_t>(bytes.size())};
}

rust::Vec<std::uint8_t> to_rust_bytes(std::vector<char> const &buf) {
  rust::Vec<std::uint8_t> out;
  out.reserve(buf.size());
  for (char c : buf) {
    out.push_back(static_cast<std::uint8_t>(c));
  }
  return out;
}

// Size caps, matching MAX_TORRENT_BYTES / MAX_RESUME_DATA_BYTES in lib.rs.
constexpr int kMaxTorrentBytes = 10 * 1024 * 1024;
constexpr int kMaxResumeBytes = 16 * 1024 * 1024;

// Parsing limits for .torrent files and resume data (which may embed the
// info dictionary). max_pieces is what fits in a maximal .torrent (20 bytes
// per v1 piece hash); depth and token limits are libtorrent's defaults.
lt::load_torrent_limits parse_limits(int max_buffer_size) {
  lt::load_torrent_limits limits;
  limits.max_buffer_size = max_buffer_size;
  limits.max_pieces = kMaxTorrentBytes / 20;
  limits.max_decode_depth = 100;
  limits.max_decode_tokens = 3000000;
  return limits;
}

std::shared_ptr<lt::torrent_info> load_info(lt::span<char const> bytes) {
  try {
    return std::make_shared<lt::torrent_info>(bytes, parse_limits(kMaxTorrentBytes),
                                              lt::from_span);
  } catch (lt::system_error const &e) {
    fail_code(kInvalidTorrent, e.code());
  }
}

// The alert categories Revaer asks for. session_stats_alert has no category
// and is always delivered. Deliberately left out: peer, connect, dht,
// port_mapping, ip_block, upload/block/piece progress, file_progress and all
// *_log categories (per-peer noise; file completion is derived from status).
constexpr lt::alert_category_t kAlertMask =
    lt::alert_category::error | lt::alert_category::status |
    lt::alert_category::storage | lt::alert_category::tracker |
    lt::alert_category::performance_warning;

// Classes of tracker announce errors (see TrackerErrorKind in alert.rs):
// 1 the tracker refused (failure reason), 2 timed out, 3 could not connect,
// 4 an HTTP error status, 5 name resolution failed, 0 anything else.
std::int32_t tracker_error_class(lt::tracker_error_alert const &p) {
  namespace asio_error = boost::asio::error;
  lt::error_code const &ec = p.error;
  if (!std::string(p.failure_reason()).empty() ||
      ec == lt::errors::tracker_failure) {
    return 1;
  }
  if (ec == lt::errors::timed_out || ec == asio_error::timed_out) {
    return 2;
  }
  if (ec == asio_error::connection_refused ||
      ec == asio_error::connection_reset ||
      ec == asio_error::connection_aborted ||
      ec == asio_error::host_unreachable ||
      ec == asio_error::network_unreachable) {
    return 3;
  }
  if (ec.category() == lt::http_category()) {
    return 4;
  }
  if (ec == asio_error::host_not_found ||
      ec == asio_error::host_not_found_try_again) {
    return 5;
  }
  return 0;
}

lt::settings_pack to_pack(FfiSettings const &s) {
  lt::settings_pack pack;
  pack.set_str(lt::settings_pack::listen_interfaces,
               std::string(s.listen_interfaces));
  pack.set_bool(lt::settings_pack::enable_dht, s.enable_dht);
  pack.set_bool(lt::settings_pack::enable_lsd, s.enable_lsd);
  pack.set_bool(lt::settings_pack::enable_upnp, s.enable_upnp);
  pack.set_bool(lt::settings_pack::enable_natpmp, s.enable_natpmp);
  pack.set_bool(lt::settings_pack::enable_outgoing_utp, s.enable_utp);
  pack.set_bool(lt::settings_pack::enable_incoming_utp, s.enable_utp);
  pack.set_int(lt::settings_pack::download_rate_limit,
               std::max<std::int32_t>(0, s.download_rate_limit));
  pack.set_int(lt::settings_pack::upload_rate_limit,
               std::max<std::int32_t>(0, s.upload_rate_limit));
  pack.set_int(lt::settings_pack::connections_limit,
               std::max<std::int32_t>(0, s.connections_limit));
  pack.set_bool(lt::settings_pack::allow_multiple_connections_per_ip,
                s.allow_multiple_connections_per_ip);
  pack.set_str(lt::settings_pack::outgoing_interfaces,
               std::string(s.outgoing_interfaces));
  if (!s.user_agent.empty()) {
    pack.set_str(lt::settings_pack::user_agent, std::string(s.user_agent));
  }
  pack.set_int(lt::settings_pack::alert_mask,
               static_cast<int>(static_cast<std::uint32_t>(kAlertMask)));
  return pack;
}

// `id`: the torrent's id (id_in()).
FfiStatus status_to_ffi(lt::torrent_status const &st, FfiId const &id) {
  FfiStatus out{};
  out.id = id;
  out.name = lossy(st.name);
  out.state = static_cast<std::int32_t>(st.state);
  out.paused = bool(st.flags & lt::torrent_flags::paused);
  out.auto_managed = bool(st.flags & lt::torrent_flags::auto_managed);
  out.sequential = bool(st.flags & lt::torrent_flags::sequential_download);
  out.has_metadata = st.has_metadata;
  out.is_finished = st.is_finished;
  out.is_seeding = st.is_seeding;
  out.upload_mode = bool(st.flags & lt::torrent_flags::upload_mode);
  out.progress_ppm = static_cast<std::uint32_t>(std::max(0, st.progress_ppm));
  out.download_rate = st.download_payload_rate;
  out.upload_rate = st.upload_payload_rate;
  out.num_peers = st.num_peers;
  out.num_seeds = st.num_seeds;
  out.total_done = st.total_done;
  out.total_wanted = st.total_wanted;
  out.total_wanted_done = st.total_wanted_done;
  out.total_download = st.total_payload_download;
  out.total_upload = st.total_payload_upload;
  out.all_time_download = st.all_time_download;
  out.all_time_upload = st.all_time_upload;
  out.num_pieces_have = st.num_pieces;
  out.save_path = lossy(st.save_path);
  if (st.errc) {
    out.has_error = true;
    std::string msg = st.errc.message();
    int const file = static_cast<int>(st.error_file);
    if (file >= 0) {
      msg += " (file " + std::to_string(file) + ")";
    }
    out.error = lossy(msg);
  }
  return out;
}

FfiTorrentInfo info_to_ffi(lt::torrent_info const &ti) {
  FfiTorrentInfo out{};
  out.present = true;
  lt::info_hash_t const ih = ti.info_hashes();
  out.id = id_of(ih);
  out.name = lossy(ti.name());
  out.total_size = ti.total_size();
  out.piece_length = ti.piece_length();
  out.num_pieces = ti.num_pieces();
  out.is_private = ti.priv();
  lt::file_storage const &fs = ti.files();
  out.files.reserve(static_cast<std::size_t>(fs.num_files()));
  for (lt::file_index_t const i : fs.file_range()) {
    FfiFile f{};
    f.index = static_cast<std::uint32_t>(static_cast<int>(i));
    f.path = lossy(fs.file_path(i));
    f.size = fs.file_size(i);
    f.offset = fs.file_offset(i);
    f.pad = fs.pad_file_at(i);
    out.files.push_back(std::move(f));
  }
  for (lt::announce_entry const &ae : ti.trackers()) {
    out.trackers.push_back(lossy(ae.url));
  }
  out.comment = lossy(ti.comment());
  out.creator = lossy(ti.creator());
  if (ih.has_v1()) {
    out.has_v1 = true;
    out.v1_hex = lossy(to_hex(ih.v1.data(), ih.v1.size()));
  }
  if (ih.has_v2()) {
    out.has_v2 = true;
    out.v2_hex = lossy(to_hex(ih.v2.data(), ih.v2.size()));
  }
  return out;
}

// The torrent in the session under either of these hashes, if any.
lt::torrent_handle find_any(lt::session &ses, lt::info_hash_t const &ih) {
  lt::torrent_handle h;
  if (ih.has_v1()) {
    h = ses.find_torrent(ih.v1);
  }
  if (!h.is_valid() && ih.has_v2()) {
    h = ses.find_torrent(ih.get(lt::protocol_version::V2));
  }
  return h;
}

lt::torrent_handle find(lt::session &ses, FfiId const &id) {
  lt::torrent_handle h = ses.find_torrent(to_sha1(id));
  if (!h.is_valid()) {
    fail(kNotFound, "", hex_of(id));
  }
  return h;
}

void set_flag(lt::torrent_flags_t &flags, lt::torrent_flags_t flag, bool on) {
  if (on) {
    flags |= flag;
  } else {
    flags &= ~flag;
  }
}

lt::tcp::endpoint to_endpoint(FfiEndpoint const &peer) {
  lt::error_code ec;
  lt::address const addr = lt::make_address(std::string(peer.ip), ec);
  if (ec) {
    fail(kInvalidArgument, ec.category().name(),
         "bad peer address '" + std::string(peer.ip) + "': " + ec.message());
  }
  return lt::tcp::endpoint(addr, peer.port);
}

// ----------------------------------------------------------------- alerts --

FfiAlert make_alert(FfiAlertKind kind) {
  FfiAlert out{};
  out.kind = kind;
  return out;
}

FfiAlert torrent_alert(FfiAlertKind kind, lt::torrent_alert const &a,
                       V2Ids const &ids) {
  FfiAlert out = make_alert(kind);
  out.id = id_in(ids, a.handle.info_hashes());
  return out;
}

// The id of a torrent that left the session, for the alerts that follow
// its removal (they carry its info-hashes; the handle is gone). The last of
// them forgets its v2 id.
FfiId departed_id(V2Ids &ids, lt::info_hash_t const &ih) {
  FfiId const id = id_in(ids, ih);
  if (ih.has_v2()) {
    auto const it = ids.find(ih.v2);
    if (it != ids.end() && it->second.departing > 0) {
      --it->second.departing;
      if (!it->second.live && it->second.departing == 0) {
        ids.erase(it);
      }
    }
  }
  return id;
}

FfiAlert other_alert(char const *what, std::string const &message) {
  FfiAlert out = make_alert(FfiAlertKind::Other);
  out.text = lossy(what);
  out.detail = lossy(message);
  return out;
}

std::string with_op(lt::error_code const &ec, lt::operation_t op) {
  return ec.message() + " (" + lt::operation_name(op) + ")";
}

// Field use per kind (mirrored in src/alert.rs):
//   id: every torrent alert; state/prev_state: StateChanged;
//   number: TrackerReply num_peers, TrackerError times_in_row,
//           HashFailed piece; port: Listen*;
//   has_error + detail: AddTorrent error; text: url / file / address /
//   error message; detail: secondary message; data: SaveResumeData;
//   statuses: StateUpdate; counters: SessionStats.
// Torrent ids follow id_in(); the caller holds Impl::ids_mutex for `ids`.
FfiAlert convert_alert(lt::alert const *a, V2Ids &ids) {
  using K = FfiAlertKind;
  if (auto const *p = lt::alert_cast<lt::add_torrent_alert>(a)) {
    FfiAlert out = make_alert(K::AddTorrent);
    out.id = p->handle.is_valid() ? id_in(ids, p->handle.info_hashes())
                                  : id_in(ids, hashes_of(p->params));
    if (p->error) {
      out.has_error = true;
      out.detail = lossy(p->error.message());
    }
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::metadata_received_alert>(a)) {
    return torrent_alert(K::MetadataReceived, *p, ids);
  }
  if (auto const *p = lt::alert_cast<lt::state_changed_alert>(a)) {
    FfiAlert out = torrent_alert(K::StateChanged, *p, ids);
    out.state = static_cast<std::int32_t>(p->state);
    out.prev_state = static_cast<std::int32_t>(p->prev_state);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::torrent_finished_alert>(a)) {
    return torrent_alert(K::TorrentFinished, *p, ids);
  }
  if (auto const *p = lt::alert_cast<lt::torrent_paused_alert>(a)) {
    return torrent_alert(K::TorrentPaused, *p, ids);
  }
  if (auto const *p = lt::alert_cast<lt::torrent_resumed_alert>(a)) {
    return torrent_alert(K::TorrentResumed, *p, ids);
  }
  if (auto const *p = lt::alert_cast<lt::torrent_removed_alert>(a)) {
    FfiAlert out = make_alert(K::TorrentRemoved);
    out.id = departed_id(ids, p->info_hashes);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::torrent_deleted_alert>(a)) {
    FfiAlert out = make_alert(K::TorrentDeleted);
    out.id = departed_id(ids, p->info_hashes);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::torrent_delete_failed_alert>(a)) {
    FfiAlert out = make_alert(K::TorrentDeleteFailed);
    out.id = departed_id(ids, p->info_hashes);
    out.text = lossy(p->error.message());
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::torrent_error_alert>(a)) {
    FfiAlert out = torrent_alert(K::TorrentError, *p, ids);
    std::string msg = p->error.message();
    std::string const file = p->filename();
    if (!file.empty()) {
      msg += " (" + file + ")";
    }
    out.text = lossy(msg);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::file_error_alert>(a)) {
    FfiAlert out = torrent_alert(K::FileError, *p, ids);
    out.text = lossy(p->filename());
    out.detail = lossy(with_op(p->error, p->op));
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::tracker_announce_alert>(a)) {
    FfiAlert out = torrent_alert(K::TrackerAnnounce, *p, ids);
    out.text = lossy(p->tracker_url());
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::tracker_reply_alert>(a)) {
    FfiAlert out = torrent_alert(K::TrackerReply, *p, ids);
    out.text = lossy(p->tracker_url());
    out.number = p->num_peers;
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::tracker_error_alert>(a)) {
    FfiAlert out = torrent_alert(K::TrackerError, *p, ids);
    out.state = tracker_error_class(*p);
    out.text = lossy(p->tracker_url());
    std::string msg = p->error.message();
    std::string const reason = p->failure_reason();
    if (!reason.empty()) {
      msg += ": " + reason;
    }
    out.detail = lossy(msg);
    out.number = p->times_in_row;
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::save_resume_data_alert>(a)) {
    FfiAlert out = torrent_alert(K::SaveResumeData, *p, ids);
    out.data = to_rust_bytes(lt::write_resume_data_buf(p->params));
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::save_resume_data_failed_alert>(a)) {
    FfiAlert out = torrent_alert(K::SaveResumeDataFailed, *p, ids);
    out.text = lossy(p->error.message());
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::state_update_alert>(a)) {
    FfiAlert out = make_alert(K::StateUpdate);
    out.statuses.reserve(p->status.size());
    for (lt::torrent_status const &st : p->status) {
      out.statuses.push_back(status_to_ffi(st, id_in(ids, st.info_hashes)));
    }
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::session_stats_alert>(a)) {
    FfiAlert out = make_alert(K::SessionStats);
    lt::span<std::int64_t const> const counters = p->counters();
    out.counters.reserve(static_cast<std::size_t>(counters.size()));
    for (std::int64_t const v : counters) {
      out.counters.push_back(v);
    }
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::listen_succeeded_alert>(a)) {
    // One alert per socket; only the TCP listener is reported as
    // ListenSucceeded (the UDP/uTP sockets share its port).
    if (p->socket_type != lt::socket_type_t::tcp) {
      return other_alert(a->what(), a->message());
    }
    FfiAlert out = make_alert(K::ListenSucceeded);
    out.text = lossy(p->address.to_string());
    out.port = static_cast<std::uint16_t>(p->port);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::listen_failed_alert>(a)) {
    FfiAlert out = make_alert(K::ListenFailed);
    out.text = lossy(p->address.to_string());
    out.port = static_cast<std::uint16_t>(std::max(0, p->port));
    out.detail = lossy(with_op(p->error, p->op) + " on '" +
                       p->listen_interface() + "'");
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::hash_failed_alert>(a)) {
    FfiAlert out = torrent_alert(K::HashFailed, *p, ids);
    out.number = static_cast<std::int32_t>(p->piece_index);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::fastresume_rejected_alert>(a)) {
    FfiAlert out = torrent_alert(K::FastresumeRejected, *p, ids);
    std::string msg = with_op(p->error, p->op);
    std::string const file = p->file_path();
    if (!file.empty()) {
      msg += " (" + file + ")";
    }
    out.text = lossy(msg);
    return out;
  }
  if (auto const *p = lt::alert_cast<lt::file_prio_alert>(a)) {
    // prioritize_files() completes on the disk thread; until this alert,
    // get_file_priorities() still returns the old priorities.
    if (p->error) {
      FfiAlert out = torrent_alert(K::FileError, *p, ids);
      out.detail = lossy(with_op(p->error, p->op));
      return out;
    }
    return torrent_alert(K::FilePrioritiesUpdated, *p, ids);
  }
  if (auto const *p = lt::alert_cast<lt::cache_flushed_alert>(a)) {
    return torrent_alert(K::CacheFlushed, *p, ids);
  }
  return other_alert(a->what(), a->message());
}

} // namespace

// ---------------------------------------------------------- BridgeSession --

FfiId BridgeSession::Impl::id(lt::info_hash_t const &ih) {
  std::lock_guard<std::mutex> const lock(ids_mutex);
  return id_in(v2_ids, ih);
}

BridgeSession::BridgeSession(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

// Destroying the lt::session blocks until its threads have shut down.
BridgeSession::~BridgeSession() = default;

std::unique_ptr<BridgeSession> new_session(FfiSettings const &settings) {
  return guarded("new_session", [&] {
    lt::session_params params(to_pack(settings));
    auto impl = std::make_unique<BridgeSession::Impl>();
    impl->ses = std::make_unique<lt::session>(std::move(params));
    return std::make_unique<BridgeSession>(std::move(impl));
  });
}

void BridgeSession::apply_settings(FfiSettings const &settings) const {
  guarded("apply_settings",
          [&] { impl_->ses->apply_settings(to_pack(settings)); });
}

FfiSettings BridgeSession::current_settings() const {
  return guarded("current_settings", [&] {
    lt::settings_pack const pack = impl_->ses->get_settings();
    FfiSettings out{};
    out.listen_interfaces =
        lossy(pack.get_str(lt::settings_pack::listen_interfaces));
    out.enable_dht = pack.get_bool(lt::settings_pack::enable_dht);
    out.enable_lsd = pack.get_bool(lt::settings_pack::enable_lsd);
    out.enable_upnp = pack.get_bool(lt::settings_pack::enable_upnp);
    out.enable_natpmp = pack.get_bool(lt::settings_pack::enable_natpmp);
    out.enable_utp = pack.get_bool(lt::settings_pack::enable_outgoing_utp) &&
                     pack.get_bool(lt::settings_pack::enable_incoming_utp);
    out.download_rate_limit =
        pack.get_int(lt::settings_pack::download_rate_limit);
    out.upload_rate_limit = pack.get_int(lt::settings_pack::upload_rate_limit);
    out.connections_limit = pack.get_int(lt::settings_pack::connections_limit);
    out.allow_multiple_connections_per_ip =
        pack.get_bool(lt::settings_pack::allow_multiple_connections_per_ip);
    out.outgoing_interfaces =
        lossy(pack.get_str(lt::settings_pack::outgoing_interfaces));
    out.user_agent = lossy(pack.get_str(lt::settings_pack::user_agent));
    return out;
  });
}

std::uint16_t BridgeSession::listen_port() const {
  return guarded("listen_port", [&] { return impl_->ses->listen_port(); });
}

void BridgeSession::pause_session() const {
  guarded("pause_session", [&] { impl_->ses->pause(); });
}

void BridgeSession::resume_session() const {
  guarded("resume_session", [&] { impl_->ses->resume(); });
}

bool BridgeSession::session_paused() const {
  return guarded("session_paused", [&] { return impl_->ses->is_paused(); });
}

void BridgeSession::reopen_network_sockets() const {
  guarded("reopen_network_sockets",
          [&] { impl_->ses->reopen_network_sockets({}); });
}

FfiId BridgeSession::add_torrent(FfiAddParams const &params,
                                 rust::Slice<std::uint8_t const> source) const {
  return guarded("add_torrent", [&] {
    lt::add_torrent_params atp;
    bool from_resume = false;
    switch (params.kind) {
    case FfiSourceKind::Magnet: {
      lt::error_code ec;
      std::string const uri(reinterpret_cast<char const *>(source.data()),
                            source.size());
      lt::parse_magnet_uri(uri, atp, ec);
      if (ec) {
        fail_code(kInvalidMagnet, ec);
      }
      break;
    }
    case FfiSourceKind::TorrentFile:
      atp.ti = load_info(as_span(source));
      break;
    case FfiSourceKind::ResumeData: {
      lt::error_code ec;
      atp = lt::read_resume_data(as_span(source), ec,
                                parse_limits(kMaxResumeBytes));
      if (ec) {
        fail_code(kInvalidResume, ec);
      }
      from_resume = true;
      break;
    }
    default:
      fail(kInvalidArgument, "", "unknown torrent source kind");
    }

    // For resume data an empty save path keeps the saved one.
    if (!params.save_path.empty() || !from_resume) {
      atp.save_path = std::string(params.save_path);
    }
    // Resume data keeps what the torrent was: paused or not, sequential or
    // not (a pause acknowledged before a crash must survive it).
    if (!from_resume) {
      set_flag(atp.flags, lt::torrent_flags::paused, params.paused);
      set_flag(atp.flags, lt::torrent_flags::sequential_download,
               params.sequential);
    }
    set_flag(atp.flags, lt::torrent_flags::auto_managed, params.auto_managed);
    // A second add of the same torrent is an error, not the old handle.
    atp.flags |= lt::torrent_flags::duplicate_is_error;
    // Part of every post_torrent_updates() answer (resume data may not say).
    atp.flags |= lt::torrent_flags::update_subscribe;

    if (!params.file_priorities.empty()) {
      atp.file_priorities.clear();
      for (std::uint8_t const p : params.file_priorities) {
        atp.file_priorities.push_back(lt::download_priority_t(p));
      }
    }
    // 0 = unlimited; for resume data, 0 keeps the saved limit.
    if (params.download_limit > 0 || !from_resume) {
      atp.download_limit =
          params.download_limit > 0 ? params.download_limit : -1;
    }
    if (params.upload_limit > 0 || !from_resume) {
      atp.upload_limit = params.upload_limit > 0 ? params.upload_limit : -1;
    }
    for (FfiEndpoint const &peer : params.peers) {
      atp.peers.push_back(to_endpoint(peer));
    }
    for (rust::String const &url : params.trackers) {
      std::string u(url);
      if (std::find(atp.trackers.begin(), atp.trackers.end(), u) ==
          atp.trackers.end()) {
        atp.trackers.push_back(std::move(u));
        atp.tracker_tiers.resize(atp.trackers.size(), 0);
      }
    }

    // The id the torrent keeps (see id_in()): the default one of what the
    // add knows, or the one asked for, which must be one of its two hashes.
    lt::info_hash_t const ih = hashes_of(atp);
    FfiId id = id_of(ih);
    bool by_v2 = !ih.has_v1();
    if (params.has_id) {
      if (ih.has_v1() && to_id(ih.v1).bytes == params.id.bytes) {
        by_v2 = false;
      } else if (ih.has_v2() &&
                 to_id(ih.get(lt::protocol_version::V2)).bytes ==
                     params.id.bytes) {
        by_v2 = true;
      } else {
        fail(kInvalidArgument, "",
             "id " + hex_of(params.id) +
                 " is neither the v1 nor the truncated v2 info-hash of the "
                 "torrent");
      }
      id = params.id;
    }

    std::lock_guard<std::mutex> const adding(impl_->add_mutex);
    // Checked here rather than left to libtorrent: the bookkeeping below
    // must not touch the id of a torrent already in the session.
    if (find_any(*impl_->ses, ih).is_valid()) {
      fail(kDuplicate, "", hex_of(id));
    }
    // Before the add: pop_alerts() on another thread may convert the
    // torrent's first alerts before add_torrent() returns.
    if (ih.has_v2()) {
      std::lock_guard<std::mutex> const lock(impl_->ids_mutex);
      if (by_v2) {
        impl_->v2_ids[ih.v2].live = true;
      } else {
        // A left-over entry of an earlier torrent with the same hashes
        // (alerts of its removal still to come then carry the default id:
        // the torrent in the session wins).
        impl_->v2_ids.erase(ih.v2);
      }
    }
    auto const forget = [&] {
      if (by_v2 && ih.has_v2()) {
        std::lock_guard<std::mutex> const lock(impl_->ids_mutex);
        auto const it = impl_->v2_ids.find(ih.v2);
        if (it != impl_->v2_ids.end()) {
          it->second.live = false;
          if (it->second.departing == 0) {
            impl_->v2_ids.erase(it);
          }
        }
      }
    };
    lt::error_code ec;
    lt::torrent_handle const h = impl_->ses->add_torrent(std::move(atp), ec);
    if (ec) {
      forget();
      if (is_code(ec, lt::errors::duplicate_torrent)) {
        fail(kDuplicate, ec.category().name(), hex_of(id));
      }
      fail_code(kLibtorrent, ec);
    }
    if (!h.is_valid()) {
      forget();
      fail(kLibtorrent, "", "add_torrent returned an invalid handle");
    }
    return id;
  });
}

void BridgeSession::remove_torrent(FfiId const &id, bool delete_files) const {
  guarded("remove_torrent", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    // A torrent known by its v2 id keeps it in the alerts that follow the
    // removal (see departed_id()). Counted before the removal is posted, so
    // that none of them can be converted first; the entry keeps the id
    // until the last of them (and for good if the removal never happens).
    lt::info_hash_t const ih = h.info_hashes();
    if (ih.has_v2()) {
      std::lock_guard<std::mutex> const lock(impl_->ids_mutex);
      auto const it = impl_->v2_ids.find(ih.v2);
      if (it != impl_->v2_ids.end() && it->second.live) {
        it->second.live = false;
        it->second.departing += delete_files ? 2 : 1;
      }
    }
    impl_->ses->remove_torrent(h, delete_files ? lt::session::delete_files
                                               : lt::remove_flags_t{});
  });
}

void BridgeSession::pause(FfiId const &id) const {
  guarded("pause", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    // An auto-managed torrent would be resumed by the queue again.
    h.unset_flags(lt::torrent_flags::auto_managed);
    h.pause();
  });
}

void BridgeSession::resume(FfiId const &id) const {
  guarded("resume", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    // A torrent stopped by an error (a full disk, a missing file) stays
    // stopped until its error is cleared: resuming is the retry. Its peers
    // were dropped with the error, so ask the trackers for them again.
    // A write failure can also leave it in upload mode (it stops asking
    // for pieces and drops seeds): leave that too.
    bool const had_error = bool(h.status(lt::status_flags_t{}).errc);
    h.clear_error();
    h.unset_flags(lt::torrent_flags::upload_mode);
    h.resume();
    if (had_error)
      h.force_reannounce(0, -1, lt::torrent_handle::ignore_min_interval);
  });
}

void BridgeSession::force_reannounce(FfiId const &id) const {
  // An operator's "reannounce now" must not wait out the tracker's
  // min_interval; announce to every tracker immediately.
  guarded("force_reannounce", [&] {
    find(*impl_->ses, id)
        .force_reannounce(0, -1, lt::torrent_handle::ignore_min_interval);
  });
}

void BridgeSession::force_recheck(FfiId const &id) const {
  guarded("force_recheck", [&] { find(*impl_->ses, id).force_recheck(); });
}

void BridgeSession::flush_cache(FfiId const &id) const {
  guarded("flush_cache", [&] { find(*impl_->ses, id).flush_cache(); });
}

void BridgeSession::set_sequential(FfiId const &id, bool on) const {
  guarded("set_sequential", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    if (on) {
      h.set_flags(lt::torrent_flags::sequential_download);
    } else {
      h.unset_flags(lt::torrent_flags::sequential_download);
    }
  });
}

void BridgeSession::set_limits(FfiId const &id, std::int32_t download,
                               std::int32_t upload) const {
  guarded("set_limits", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    h.set_download_limit(download > 0 ? download : -1);
    h.set_upload_limit(upload > 0 ? upload : -1);
  });
}

FfiLimits BridgeSession::limits(FfiId const &id) const {
  return guarded("limits", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    FfiLimits out{};
    out.download = std::max(0, h.download_limit());
    out.upload = std::max(0, h.upload_limit());
    return out;
  });
}

void BridgeSession::set_file_priorities(
    FfiId const &id, rust::Slice<std::uint8_t const> priorities) const {
  guarded("set_file_priorities", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    std::vector<lt::download_priority_t> prios;
    prios.reserve(priorities.size());
    for (std::uint8_t const p : priorities) {
      prios.push_back(lt::download_priority_t(p));
    }
    h.prioritize_files(prios);
  });
}

rust::Vec<std::uint8_t> BridgeSession::file_priorities(FfiId const &id) const {
  return guarded("file_priorities", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    rust::Vec<std::uint8_t> out;
    for (lt::download_priority_t const p : h.get_file_priorities()) {
      out.push_back(static_cast<std::uint8_t>(p));
    }
    return out;
  });
}

rust::Vec<std::int64_t> BridgeSession::file_progress(FfiId const &id) const {
  return guarded("file_progress", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    // Piece granularity is enough for a progress bar and far cheaper than
    // the per-block count.
    std::vector<std::int64_t> const bytes =
        h.file_progress(lt::torrent_handle::piece_granularity);
    rust::Vec<std::int64_t> out;
    out.reserve(bytes.size());
    for (std::int64_t const b : bytes) {
      out.push_back(b);
    }
    return out;
  });
}

FfiStatus BridgeSession::status(FfiId const &id) const {
  return guarded("status", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    lt::torrent_status const st =
        h.status(lt::torrent_handle::query_name |
                 lt::torrent_handle::query_save_path |
                 lt::torrent_handle::query_accurate_download_counters);
    return status_to_ffi(st, impl_->id(st.info_hashes));
  });
}

rust::Vec<FfiPeer> BridgeSession::peers(FfiId const &id) const {
  return guarded("peers", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    std::vector<lt::peer_info> infos;
    h.get_peer_info(infos);
    rust::Vec<FfiPeer> out;
    for (lt::peer_info const &p : infos) {
      FfiPeer peer{};
      peer.ip = lossy(p.ip.address().to_string());
      peer.port = p.ip.port();
      peer.client = lossy(p.client);
      peer.seed = bool(p.flags & lt::peer_info::seed);
      peer.interested = bool(p.flags & lt::peer_info::interesting);
      peer.choked = bool(p.flags & lt::peer_info::choked);
      peer.remote_interested = bool(p.flags & lt::peer_info::remote_interested);
      peer.remote_choked = bool(p.flags & lt::peer_info::remote_choked);
      peer.encrypted = bool(p.flags & (lt::peer_info::rc4_encrypted |
                                       lt::peer_info::plaintext_encrypted));
      peer.utp = bool(p.flags & lt::peer_info::utp_socket);
      peer.outgoing = bool(p.flags & lt::peer_info::local_connection);
      peer.progress_ppm = static_cast<std::uint32_t>(std::max(0, p.progress_ppm));
      peer.download_rate = p.payload_down_speed;
      peer.upload_rate = p.payload_up_speed;
      peer.downloaded = p.total_download;
      peer.uploaded = p.total_upload;
      out.push_back(std::move(peer));
    }
    return out;
  });
}

rust::Vec<FfiTracker> BridgeSession::trackers(FfiId const &id) const {
  return guarded("trackers", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    auto const now = lt::time_point_cast<lt::seconds32>(lt::clock_type::now());
    rust::Vec<FfiTracker> out;
    for (lt::announce_entry const &ae : h.trackers()) {
      FfiTracker t{};
      t.url = lossy(ae.url);
      t.tier = ae.tier;
      t.next_announce_secs = -1;
      t.seeders = -1;
      t.leechers = -1;
      t.downloaded = -1;
      std::string error;
      for (lt::announce_endpoint const &ep : ae.endpoints) {
        if (!ep.enabled) {
          continue;
        }
        for (lt::announce_infohash const &ih : ep.info_hashes) {
          // Answered: the started announce went through and nothing
          // failed since (libtorrent's own is_working() is only fails == 0,
          // true before any announce).
          if (ih.start_sent && ih.fails == 0 && !ih.last_error) {
            t.working = true;
          }
          t.updating = t.updating || ih.updating;
          t.fails = std::max(t.fails, static_cast<std::int32_t>(ih.fails));
          if (ih.next_announce > now) {
            std::int64_t const in =
                lt::total_seconds(ih.next_announce - now);
            if (t.next_announce_secs < 0 || in < t.next_announce_secs) {
              t.next_announce_secs = in;
            }
          }
          if (ih.last_error && error.empty()) {
            error = ih.last_error.message();
          }
          if (!ih.message.empty() && t.message.empty()) {
            t.message = lossy(ih.message);
          }
          t.seeders = std::max(t.seeders, ih.scrape_complete);
          t.leechers = std::max(t.leechers, ih.scrape_incomplete);
          t.downloaded = std::max(t.downloaded, ih.scrape_downloaded);
        }
      }
      if (!t.working) {
        t.last_error = lossy(error);
      }
      out.push_back(std::move(t));
    }
    return out;
  });
}

FfiTorrentInfo BridgeSession::torrent_info(FfiId const &id) const {
  return guarded("torrent_info", [&] {
    lt::torrent_handle const h = find(*impl_->ses, id);
    std::shared_ptr<lt::torrent_info const> const ti = h.torrent_file();
    if (!ti) {
      return FfiTorrentInfo{};
    }
    FfiTorrentInfo out = info_to_ffi(*ti);
    out.id = impl_->id(ti->info_hashes());
    return out;
  });
}

rust::Vec<FfiId> BridgeSession::torrents() const {
  return guarded("torrents", [&] {
    std::vector<lt::torrent_handle> const handles = impl_->ses->get_torrents();
    rust::Vec<FfiId> out;
    out.reserve(handles.size());
    std::lock_guard<std::mutex> const lock(impl_->ids_mutex);
    for (lt::torrent_handle const &h : handles) {
      out.push_back(id_in(impl_->v2_ids, h.info_hashes()));
    }
    return out;
  });
}

void BridgeSession::post_torrent_updates() const {
  guarded("post_torrent_updates", [&] {
    impl_->ses->post_torrent_updates(lt::torrent_handle::query_name |
                                     lt::torrent_handle::query_save_path);
  });
}

void BridgeSession::post_session_stats() const {
  guarded("post_session_stats", [&] { impl_->ses->post_session_stats(); });
}

void BridgeSession::save_resume_data(FfiId const &id) const {
  guarded("save_resume_data", [&] {
    find(*impl_->ses, id)
        .save_resume_data(lt::torrent_handle::save_info_dict |
                          lt::torrent_handle::flush_disk_cache);
  });
}

void BridgeSession::connect_peer(FfiId const &id,
                                 FfiEndpoint const &peer) const {
  guarded("connect_peer", [&] {
    lt::tcp::endpoint const ep = to_endpoint(peer);
    find(*impl_->ses, id).connect_peer(ep);
  });
}

bool BridgeSession::wait_for_alert(std::int64_t timeout_ms) const {
  return guarded("wait_for_alert", [&] {
    return impl_->ses->wait_for_alert(std::chrono::milliseconds(
               std::max<std::int64_t>(0, timeout_ms))) != nullptr;
  });
}

rust::Vec<FfiAlert> BridgeSession::pop_alerts() const {
  return guarded("pop_alerts", [&] {
    std::lock_guard<std::mutex> const lock(impl_->alert_mutex);
    std::vector<lt::alert *> alerts;
    impl_->ses->pop_alerts(&alerts);
    rust::Vec<FfiAlert> out;
    out.reserve(alerts.size());
    std::lock_guard<std::mutex> const ids_lock(impl_->ids_mutex);
    for (lt::alert const *a : alerts) {
      // One bad alert must not lose the rest of the batch.
      try {
        out.push_back(convert_alert(a, impl_->v2_ids));
      } catch (std::exception const &e) {
        out.push_back(other_alert("revaer_alert_conversion_error",
                                  std::string(a->what()) + ": " + e.what()));
      } catch (...) {
        out.push_back(other_alert("revaer_alert_conversion_error",
                                  std::string(a->what()) +
                                      ": unknown C++ exception"));
      }
    }
    return out;
  });
}

// --------------------------------------------------------- free functions --

rust::Vec<FfiMetric> session_stats_metrics() {
  return guarded("session_stats_metrics", [] {
    rust::Vec<FfiMetric> out;
    for (lt::stats_metric const &m : lt::session_stats_metrics()) {
      FfiMetric metric{};
      metric.name = lossy(m.name);
      metric.index = static_cast<std::size_t>(std::max(0, m.value_index));
      out.push_back(std::move(metric));
    }
    return out;
  });
}

FfiTorrentInfo parse_torrent(rust::Slice<std::uint8_t const> bytes) {
  return guarded("parse_torrent",
                 [&] { return info_to_ffi(*load_info(as_span(bytes))); });
}

FfiMagnet parse_magnet(rust::Str uri) {
  return guarded("parse_magnet", [&] {
    lt::error_code ec;
    lt::add_torrent_params atp;
    lt::parse_magnet_uri(lt::string_view(uri.data(), uri.size()), atp, ec);
    if (ec) {
      fail_code(kInvalidMagnet, ec);
    }
    if (!atp.info_hashes.has_v1() && !atp.info_hashes.has_v2()) {
      fail(kInvalidMagnet, "", "magnet link has no info-hash");
    }
    FfiMagnet out{};
    out.id = id_of(atp.info_hashes);
    out.has_name = !atp.name.empty();
    out.name = lossy(atp.name);
    for (std::string const &url : atp.trackers) {
      out.trackers.push_back(lossy(url));
    }
    return out;
  });
}

rust::Vec<std::uint8_t> create_torrent(FfiCreateOptions const &options) {
  return guarded("create_torrent", [&] {
    lt::create_flags_t flags{};
    if (options.format == 1) {
      flags |= lt::create_torrent::v1_only;
    } else if (options.format == 2) {
      flags |= lt::create_torrent::v2_only;
    }
    lt::file_storage fs;
    lt::add_files(fs, std::string(options.content), flags);
    if (fs.num_files() == 0) {
      fail(kInvalidArgument, "",
           "no files to hash under '" + std::string(options.content) + "'");
    }
    lt::create_torrent t(fs, options.piece_size, flags);
    int tier = 0;
    for (rust::String const &url : options.trackers) {
      t.add_tracker(std::string(url), tier++);
    }
    if (!options.creator.empty()) {
      t.set_creator(std::string(options.creator).c_str());
    }
    if (!options.comment.empty()) {
      t.set_comment(std::string(options.comment).c_str());
    }
    lt::error_code ec;
    lt::set_piece_hashes(t, std::string(options.parent), ec);
    if (ec) {
      fail_code(kLibtorrent, ec);
    }
    return to_rust_bytes(t.generate_buf());
  });
}

} // namespace ltb
} // namespace revaer
