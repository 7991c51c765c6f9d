#include "overlay/relay_path.h"

namespace wsa::overlay {

bool RelayPath::send(const wg::Endpoint& to, std::span<const uint8_t> datagram) {
  if (!wg::RelayEndpoints::isRelay(to)) return false;
  auto key = endpoints_.keyFor(to);
  if (!key || !stream_) {
    ++unroutable_;
    return true;
  }
  stream_->send(*key, datagram);
  return true;
}

void RelayPath::setStream(std::shared_ptr<control::RelayStream> stream) {
  if (stream_) {
    totals_ += stream_->stats();
    totals_.queued = 0;
  }
  stream_ = std::move(stream);
  if (stream_) ++streams_;
}

control::RelayStreamStats RelayPath::stats() const {
  control::RelayStreamStats s = totals_;
  if (stream_) s += stream_->stats();
  return s;
}

}  // namespace wsa::overlay
