// Errors as values. Library functions return Result<T>; nothing throws across
// the library boundary. An Error carries one line meant for the lab admin:
// "FILE: FIELD: what is wrong".
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace troy {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}      // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

inline Result<void> success() { return {}; }

// Propagates a failed Result out of the calling function.
#define TROY_TRY(expr)                               \
  do {                                               \
    auto troy_try_result_ = (expr);                  \
    if (!troy_try_result_.ok()) return troy_try_result_.error(); \
  } while (0)

// Declares `var` from a Result, returning early on failure.
#define TROY_ASSIGN(var, expr)                       \
  auto var##_result_ = (expr);                       \
  if (!var##_result_.ok()) return var##_result_.error(); \
  auto var = std::move(var##_result_).value()

}  // namespace troy
