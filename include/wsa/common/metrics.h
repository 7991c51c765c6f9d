#pragma once
// Metrics, one style everywhere. A component counts in plain fields of its own (atomics where
// other threads count; Histogram below where it observes durations) and exposes them through one
// collector that reads those counts at scrape time and describes them with a Families builder.
// A process serves the union of its collectors (Collectors); prometheus-cpp serializes.

#include <prometheus/metric_family.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wsa::metrics {

using Label = prometheus::ClientMetric::Label;
// Written in the order given (prometheus-cpp's own families sort them by name).
using Labels = std::vector<Label>;

template <typename V>
concept Number = std::integral<V> || std::floating_point<V>;

// Fixed bucket bounds (ascending upper bounds, inclusive), a count per bucket and the sum of the
// observations: what a Prometheus histogram exports. Plain data, not thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // counts()[i]: observations in (bounds[i-1], bounds[i]]; counts().back(): above every bound.
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Families;

// One family of a Families builder; adds series to it. Valid while its builder lives (and is
// not moved).
class Family {
 public:
  // A counter's or gauge's series.
  template <Number V>
  Family& add(V value, Labels labels = {}) {
    return addValue(static_cast<double>(value), std::move(labels));
  }
  // A histogram's series.
  Family& add(const Histogram& histogram, Labels labels = {});

 private:
  friend class Families;
  Family(Families& owner, size_t index) : owner_(&owner), index_(index) {}
  Family& addValue(double value, Labels labels);
  Families* owner_;
  size_t index_;
};

// Builds the families of one scrape. A family is created (with its help text and type) on first
// use; naming it again adds to it. Families keep the order of their first use, series the order
// they were added in; a family without series is left out (as prometheus-cpp's registry does).
class Families {
 public:
  Family counters(const std::string& name, const std::string& help);
  Family gauges(const std::string& name, const std::string& help);
  Family histograms(const std::string& name, const std::string& help);

  // A family with (so far) one series.
  template <Number V>
  void counter(const std::string& name, const std::string& help, V value, Labels labels = {}) {
    counters(name, help).add(value, std::move(labels));
  }
  template <Number V>
  void gauge(const std::string& name, const std::string& help, V value, Labels labels = {}) {
    gauges(name, help).add(value, std::move(labels));
  }
  void histogram(const std::string& name, const std::string& help, const Histogram& histogram,
                 Labels labels = {}) {
    histograms(name, help).add(histogram, std::move(labels));
  }

  std::vector<prometheus::MetricFamily> take();
  // Prometheus text exposition format (0.0.4).
  std::string text() const;

 private:
  friend class Family;
  Family family(const std::string& name, const std::string& help, prometheus::MetricType type);
  std::vector<prometheus::MetricFamily> out_;
};

// A component's metrics: reads its counts and describes them. Runs at every scrape.
using Collector = std::function<void(Families&)>;

// A process's collectors; a scrape is the union of them, in the order they were added. Add and
// collect on one thread (or before other threads collect).
class Collectors {
 public:
  void add(Collector collector) { collectors_.push_back(std::move(collector)); }
  Families collect() const;
  std::string text() const { return collect().text(); }

 private:
  std::vector<Collector> collectors_;
};

}  // namespace wsa::metrics
