#pragma once

// A log-linear histogram of durations in nanoseconds, shared by the guest (workers record
// wake-up latencies into it) and the host (which pools workers by adding bucket counts,
// never by averaging percentiles, and reads percentiles from the pool). Each power of two
// is split into kSubBuckets linear buckets, so a value is known to within 1/kSubBuckets
// (6 %); values past 2^40 ns (18 minutes) share the last bucket.

#include <array>
#include <bit>
#include <cstdint>
#include <map>

namespace ktstr {

class LatencyHistogram {
  public:
    static constexpr int kSubBits = 4;
    static constexpr std::uint64_t kSubBuckets = 1u << kSubBits;
    static constexpr int kMaxBits = 40;
    static constexpr std::size_t kBuckets = (kMaxBits - kSubBits + 1) * kSubBuckets;

    static std::size_t bucket_of(std::uint64_t ns) {
        if (ns < kSubBuckets)
            return std::size_t(ns);
        int bits = std::bit_width(ns); // > kSubBits
        if (bits > kMaxBits)
            return kBuckets - 1;
        std::uint64_t sub = (ns >> (bits - 1 - kSubBits)) & (kSubBuckets - 1);
        return std::size_t((bits - kSubBits) * kSubBuckets + sub);
    }
    // The smallest value that falls in `bucket`.
    static std::uint64_t lower_bound(std::size_t bucket) {
        if (bucket < kSubBuckets)
            return bucket;
        int bits = int(bucket / kSubBuckets) + kSubBits;
        std::uint64_t sub = bucket % kSubBuckets;
        return (std::uint64_t(1) << (bits - 1)) + (sub << (bits - 1 - kSubBits));
    }

    void add(std::uint64_t ns, std::uint64_t count = 1) {
        counts_[bucket_of(ns)] += count;
        total_ += count;
        max_ = ns > max_ ? ns : max_;
    }
    void merge(const LatencyHistogram& other) {
        for (std::size_t i = 0; i < kBuckets; ++i)
            counts_[i] += other.counts_[i];
        total_ += other.total_;
        max_ = other.max_ > max_ ? other.max_ : max_;
    }
    std::uint64_t total() const { return total_; }
    std::uint64_t max() const { return max_; }
    // The nearest-rank percentile (0 < p <= 100), as the lower edge of its bucket.
    std::uint64_t percentile(double p) const {
        if (total_ == 0)
            return 0;
        auto rank = std::uint64_t(double(total_) * p / 100.0 + 0.999999);
        rank = rank == 0 ? 1 : rank;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < kBuckets; ++i) {
            seen += counts_[i];
            if (seen >= rank)
                return lower_bound(i);
        }
        return max_;
    }
    // Non-empty buckets only: {bucket index: count}.
    std::map<std::size_t, std::uint64_t> nonzero() const {
        std::map<std::size_t, std::uint64_t> buckets;
        for (std::size_t i = 0; i < kBuckets; ++i)
            if (counts_[i])
                buckets[i] = counts_[i];
        return buckets;
    }

  private:
    std::array<std::uint64_t, kBuckets> counts_{};
    std::uint64_t total_ = 0, max_ = 0;
};

} // namespace ktstr
