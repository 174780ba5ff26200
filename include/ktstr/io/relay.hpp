#pragma once

#include <utility>
#include <vector>

namespace ktstr {

// Copies each (from, to) pair of descriptors until `from` reaches end of file, all pairs
// at once on one io_uring-backed executor. `from` is read asynchronously (it is typically a
// pipe); `to` is written in full before the next read. The descriptors stay open.
void relay_until_eof(const std::vector<std::pair<int, int>>& pairs);

} // namespace ktstr
