#pragma once
// Cron specs as scripts use them: six fields, seconds first ("*/30 * * * * *"), or the classic
// five (seconds = 0). Fields take *, ?, numbers, ranges a-b, steps */n and a-b/n, lists, and
// names (JAN-DEC, SUN-SAT; 7 is Sunday too). Day-of-month and day-of-week combine as in
// Vixie cron: if either is *, both must match; otherwise either may.

#include <bitset>
#include <optional>
#include <string>

#include "wsa/common/result.h"
#include "wsa/common/time.h"

namespace wsa::agent {

class CronSchedule {
 public:
  static Result<CronSchedule> parse(const std::string& spec);
  // The first matching time strictly after `after`, in local time; nullopt if none within
  // five years (an impossible date such as 30 February).
  std::optional<SystemTime> next(SystemTime after) const;
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::bitset<60> seconds_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0-6, Sunday 0
  bool days_star_ = false;
  bool weekdays_star_ = false;
};

}  // namespace wsa::agent
