#pragma once
// How a client command ends: an exit code and, when it failed, the message for stderr. Exit codes
// as the docs give them: 0 success, 1 failure (the agent could not be reached, the control server
// refused), 2 a bad command line.

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace wsa::client {

struct Exit {
  static constexpr int kFailure = 1;
  static constexpr int kUsage = 2;

  int code = 0;
  std::string message;  // printed as "wsa: <message>"; empty on success

  static Exit success() { return {}; }
  static Exit failure(std::string message) { return {kFailure, std::move(message)}; }
  static Exit usage(std::string message) { return {kUsage, std::move(message)}; }
};

// A value, or how the program ends instead.
template <typename T>
class [[nodiscard]] Outcome {
 public:
  Outcome(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Outcome(Exit exit) : v_(std::move(exit)) {  // NOLINT(google-explicit-constructor)
    assert(std::get<1>(v_).code != 0);
  }

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const Exit& exit() const { return std::get<1>(v_); }

 private:
  std::variant<T, Exit> v_;
};

// Prints a failure's message ("wsa: …") to stderr; returns the exit code.
int report(const Exit& exit);

}  // namespace wsa::client
