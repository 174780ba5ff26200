#pragma once

#include "ktstr/base/embedded_file.hpp"
#include "ktstr/scenario/scenario.hpp"

#include <span>
#include <string>
#include <vector>

namespace ktstr {

// The canned scenarios (scenarios/*.json), as compiled into ktstr.
std::span<const EmbeddedFile> catalogue_files();

// Every canned scenario, by group then name.
std::vector<Scenario> catalogue();
// A canned scenario by name, or the scenario in a file (a spec with a '/' or ending in
// .json); throws UsageError naming what is wrong, listing the names for an unknown one.
Scenario find_scenario(const std::string& spec);

} // namespace ktstr
