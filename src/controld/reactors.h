#pragma once
// Server-stream reactors with a bounded, ordered write queue. Include only from service .cc
// files (pulls in gRPC).

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>

namespace wsa::controld {

// Base is grpc::ServerWriteReactor<Resp> or grpc::ServerBidiReactor<Req, Resp>.
template <typename Resp, typename Base>
class QueuedWriteReactor : public Base {
 public:
  explicit QueuedWriteReactor(size_t max_queue) : max_queue_(max_queue) {}

 protected:
  // Queues `msg`, or lets `merge` fold it into the last queued (not yet started) message.
  // False if the queue is full or the stream is finishing.
  template <typename Merge>
  bool enqueueWith(Merge&& merge, Resp msg) {
    const Resp* start = nullptr;
    {
      std::lock_guard lock(wmu_);
      if (finishing_) return false;
      if (queue_.size() >= 2 && merge(queue_.back())) return true;
      if (queue_.size() >= max_queue_) return false;
      queue_.push_back(std::move(msg));
      if (!writing_) {
        writing_ = true;
        start = &queue_.front();
      }
    }
    if (start != nullptr) this->StartWrite(start);
    return true;
  }
  bool enqueue(Resp msg) {
    return enqueueWith([](Resp&) { return false; }, std::move(msg));
  }

  // Finishes once queued messages are written (at once if none). Idempotent.
  void finishAfterWrites(grpc::Status status) {
    bool now = false;
    {
      std::lock_guard lock(wmu_);
      if (finishing_) return;
      finishing_ = true;
      finish_status_ = std::move(status);
      if (!writing_) {
        finished_ = true;
        now = true;
      }
    }
    if (now) this->Finish(*finish_status_);
  }

  void OnWriteDone(bool ok) override {
    const Resp* next = nullptr;
    std::optional<grpc::Status> finish;
    {
      std::lock_guard lock(wmu_);
      queue_.pop_front();
      if (!ok) {
        queue_.clear();
        writing_ = false;
        if (!finished_) {
          finished_ = true;
          finishing_ = true;
          finish =
              finish_status_.value_or(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
        }
      } else if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        if (finishing_ && !finished_) {
          finished_ = true;
          finish = *finish_status_;
        }
      }
    }
    if (next != nullptr) this->StartWrite(next);
    if (finish) this->Finish(*finish);
  }

 private:
  std::mutex wmu_;
  std::deque<Resp> queue_;
  size_t max_queue_;
  bool writing_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  std::optional<grpc::Status> finish_status_;
};

}  // namespace wsa::controld
