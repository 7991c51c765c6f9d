#include "wsa/wg/relay_path.h"

#include "wsa/wg/device.h"

namespace wsa::wg {

bool RelayPath::send(const Endpoint& to, std::span<const uint8_t> datagram) {
  if (!RelayEndpoints::isRelay(to)) return false;
  auto key = endpoints_.keyFor(to);
  if (!key || !stream_) {
    ++unroutable_;
    return true;
  }
  stream_->send(*key, datagram);
  return true;
}

void RelayPath::deliver(Device& device, control::RelayStream::Packets packets) {
  for (auto& [key, payload] : packets) {
    device.receive(endpoints_.endpointFor(key),
                   {reinterpret_cast<uint8_t*>(payload.data()), payload.size()});
  }
}

}  // namespace wsa::wg
