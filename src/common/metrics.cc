#include "wsa/common/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace wsa::metrics {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end())) {
    throw std::invalid_argument("histogram bounds must be ascending");
  }
}

void Histogram::observe(double value) {
  // The first bucket whose bound is >= value (prometheus-cpp's rule); past the end: +Inf.
  auto i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                               bounds_.begin());
  ++counts_[i];
  ++count_;
  sum_ += value;
}

Family& Family::addValue(double value, Labels labels) {
  auto& f = owner_->out_[index_];
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else if (f.type == prometheus::MetricType::Gauge) {
    m.gauge.value = value;
  } else {
    throw std::logic_error("metric " + f.name + " is not a counter or a gauge");
  }
  f.metric.push_back(std::move(m));
  return *this;
}

Family& Family::add(const Histogram& h, Labels labels) {
  auto& f = owner_->out_[index_];
  if (f.type != prometheus::MetricType::Histogram) {
    throw std::logic_error("metric " + f.name + " is not a histogram");
  }
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  uint64_t cumulative = 0;
  m.histogram.bucket.reserve(h.counts().size());
  for (size_t i = 0; i < h.counts().size(); ++i) {
    cumulative += h.counts()[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < h.bounds().size() ? h.bounds()[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = h.count();
  m.histogram.sample_sum = h.sum();
  f.metric.push_back(std::move(m));
  return *this;
}

Family Families::family(const std::string& name, const std::string& help,
                        prometheus::MetricType type) {
  for (size_t i = 0; i < out_.size(); ++i) {
    if (out_[i].name != name) continue;
    if (out_[i].type != type) {
      throw std::logic_error("metric " + name + " described with two types");
    }
    return Family(*this, i);
  }
  out_.push_back(prometheus::MetricFamily{name, help, type, {}});
  return Family(*this, out_.size() - 1);
}

Family Families::counters(const std::string& name, const std::string& help) {
  return family(name, help, prometheus::MetricType::Counter);
}
Family Families::gauges(const std::string& name, const std::string& help) {
  return family(name, help, prometheus::MetricType::Gauge);
}
Family Families::histograms(const std::string& name, const std::string& help) {
  return family(name, help, prometheus::MetricType::Histogram);
}

std::vector<prometheus::MetricFamily> Families::take() {
  std::vector<prometheus::MetricFamily> out;
  for (auto& f : out_) {
    if (!f.metric.empty()) out.push_back(std::move(f));
  }
  out_.clear();
  return out;
}

std::string Families::text() const {
  return prometheus::TextSerializer().Serialize(Families(*this).take());
}

Families Collectors::collect() const {
  Families out;
  for (const auto& c : collectors_) c(out);
  return out;
}

}  // namespace wsa::metrics
