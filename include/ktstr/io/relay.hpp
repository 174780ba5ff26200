#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace ktstr {

// Copies each (from, to) pair of descriptors until `from` reaches end of file, all pairs
// at once on one io_uring-backed executor; each `to` gets a bounded buffer (FdWriter), so a
// stalled reader holds back its source, never the loop. SIGINT and SIGTERM meanwhile go to
// `on_signal` (which should make the sources end, e.g. by killing their writer), and the
// relay then gives the last output a second before it returns the signal; 0 otherwise.
// The descriptors stay open.
int relay_until_eof(const std::vector<std::pair<int, int>>& pairs,
                    const std::function<void(int)>& on_signal);

} // namespace ktstr
